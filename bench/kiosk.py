"""Benchmark: the kiosk server against the raw interpreter, and the attract-mode frame rate, in one run.

The kiosk (`atelier kiosk`, a separate process, no camera) serves the `edge` generator exported as an int8
bundle with the real exporter (untrained: speed does not depend on the weights), or the bundle given with
--bundle. Closed-loop loopback clients (threads with lean keep-alive connections) POST /api/generate for 1 or 8
designs (new random seeds, so nothing comes from the cache), 1, 4 and 16 clients at a time; p50/p99 latency
per request is reported beside the raw interpreter latency of the same work measured in this run
(`DesignGenerator` on the canonical batch-1 model: what the kiosk runs for designs with an ID).

Server overhead at p50 = p50 / (clients x raw p50) - 1: with one interpreter, c requests in flight take at
best c raw calls each, so that is the latency a zero-overhead server would give. Negative means the server
did better than serial raw calls. Goal: <= 20 % at 16 clients.

The kiosk can do better than one interpreter on purpose: it splits the requests in flight across lanes (one
single-threaded interpreter per CPU thread, each taking the next part off the queue). So a second baseline is
printed, "lanes": the same clients x n designs made by two 1-thread interpreters side by side in this
process, with no HTTP, no queue and no PNG. The overhead against it is the cost of serving alone (HTTP, JSON,
the thread hops, PNG encoding), with the execution strategy factored out.

Attract mode: frames/s of one client fetching 8-frame walk strips back to back as the page does; goal >= 10
frames/s.

Usage: .venv/bin/python bench/kiosk.py [--bundle DIR] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
BENCH_DIR = Path(__file__).resolve().parent

CLIENTS = (1, 4, 16)
BATCHES = (1, 8)


def percentile_ms(times_s: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(times_s) * 1000, q))


def export_edge_bundle(tmp: Path) -> Path:
    """An int8 bundle (batch 1 and 8) of an untrained `edge` generator, made by the real exporter."""
    import keras

    sys.path.insert(0, str(BENCH_DIR))
    from generate import write_run  # bench/generate.py: a run folder holding an untrained generator

    from trainer.config import preset
    from trainer.export import ExportOptions, export_bundle
    from trainer.networks import build_generator

    keras.utils.set_random_seed(0)
    cfg = preset("edge")
    write_run(tmp / "edge-run", cfg, build_generator(cfg))
    out = tmp / "edge-int8"
    export_bundle(tmp / "edge-run", out, ExportOptions(batches=(1, 8), force=True, edgetpu_compiler=False))
    return out


class RawInterpreter:
    """The interpreter alone, in this process: the exact path (batch-1 model) for 1 or 8 designs, the batch-8
    model (the one-thread worker's attract walk), and the kiosk's lanes (1-thread interpreters side by side)."""

    def __init__(self, bundle_dir: Path, lanes: int = 2) -> None:
        from edge.bundle import load_bundle
        from edge.designs import DesignGenerator

        bundle = load_bundle(bundle_dir)
        gen1 = DesignGenerator(bundle, batch=1)
        gen8 = DesignGenerator(bundle, batch=max(bundle.batches))
        self.cases = {"1": (gen1, 1), "8": (gen1, 8), "b8-model": (gen8, max(bundle.batches))}
        self.lanes = [DesignGenerator(bundle, batch=min(bundle.batches), num_threads=1) for _ in range(lanes)]
        self.pool = ThreadPoolExecutor(lanes)

    def lanes_latencies(self, n: int, seconds: float) -> list[float]:
        """Seconds to make n exact designs on the lanes, each making its share (no queue, no HTTP, no PNG)."""
        z = self.lanes[0].sample_latents(n, 0)
        shares = [rows for rows in np.array_split(np.arange(n), len(self.lanes)) if len(rows)]

        def once() -> None:
            lanes = self.lanes[: len(shares)]  # fewer designs than lanes: some lanes have none
            for f in [self.pool.submit(lane.generate, z[rows]) for lane, rows in zip(lanes, shares, strict=True)]:
                f.result()

        for _ in range(3):
            once()
        times: list[float] = []
        stop_at = time.perf_counter() + seconds
        while time.perf_counter() < stop_at or len(times) < 10:
            t0 = time.perf_counter()
            once()
            times.append(time.perf_counter() - t0)
        return times

    def latencies(self, name: str, seconds: float) -> list[float]:
        """Seconds per call over about `seconds` of calls (after 3 warm-up calls)."""
        gen, n = self.cases[name]
        z = gen.sample_latents(n, 0)
        for _ in range(3):
            gen.generate(z)
        times: list[float] = []
        stop_at = time.perf_counter() + seconds
        while time.perf_counter() < stop_at or len(times) < 10:
            t0 = time.perf_counter()
            gen.generate(z)
            times.append(time.perf_counter() - t0)
        return times


def start_kiosk(bundle_dir: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """`atelier kiosk` on a free loopback port with more `args`, once it logs READY; its log is drained."""
    process = subprocess.Popen(
        [sys.executable, "-m", "atelier", "kiosk", "--bundle", str(bundle_dir), "--port", "0", *args],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if m := re.search(r"event=ready url=(\S+)", line):
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()  # drain logs
            return process, m[1].rstrip("/")
    raise RuntimeError(f"the kiosk did not start (exit status {process.wait()})")


class _KeepAliveClient:
    """A minimal HTTP/1.1 keep-alive client on a raw socket: one request out, status and Content-Length in.

    The load clients share the 2 cores with the server they measure, so they should take as little of them as
    possible (the job `wrk` does elsewhere): http.client parses every reply's headers with the email package and
    cost 0.2 ms of CPU a request here, which showed up as 3-5 points of server overhead at 16 clients.
    """

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host = host.encode()
        self.buffer = b""

    def post_json(self, path: str, body: dict) -> bytes:
        data = json.dumps(body).encode()
        self.sock.sendall(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.host, len(data), data))
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self.buffer += self._recv()
        head = self.buffer[:end]
        if not head.startswith(b"HTTP/1.1 200 "):
            status_line = head.split(b"\r\n", 1)[0]
            raise RuntimeError(f"{path} answered {status_line!r}")
        length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
        if length is None:
            raise RuntimeError(f"{path} answered without a Content-Length")
        stop = end + 4 + int(length[1])
        while len(self.buffer) < stop:
            self.buffer += self._recv()
        reply, self.buffer = self.buffer[end + 4 : stop], self.buffer[stop:]
        return reply

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise RuntimeError("the kiosk closed the connection")
        return chunk

    def close(self) -> None:
        self.sock.close()


def load(url: str, clients: int, n: int, seconds: float) -> list[float]:
    """Closed loop: each client POSTs /api/generate for n designs until the time is up; request latencies."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds
    host, port = url.split("//", 1)[1].rsplit(":", 1)

    def client(k: int) -> None:
        rng = np.random.default_rng(k)
        mine = []
        conn = _KeepAliveClient(host, int(port))
        first = json.loads(conn.post_json("/api/generate", {"n": n}))  # connect, warm, and check the reply
        if len(first["designs"]) != n:
            raise RuntimeError(f"asked for {n} designs, got {len(first['designs'])}")
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            conn.post_json("/api/generate", {"n": n, "seed": int(rng.integers(2**32))})
            mine.append(time.perf_counter() - t0)
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def attract_fps(url: str, seconds: float) -> float:
    frames = 0
    with httpx.Client(base_url=url, timeout=60.0) as c:
        c.get("/api/walk.png", params={"seed": 1, "count": 8})
        t0 = time.perf_counter()
        start = 0
        while time.perf_counter() - t0 < seconds:
            r = c.get("/api/walk.png", params={"seed": 1, "start": start, "count": 8})
            r.raise_for_status()
            frames += int(r.headers["x-frame-count"])
            start += 8
        return frames / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None, help="bundle to serve (default: edge, untrained)")
    parser.add_argument("--seconds", type=float, default=4.0, help="load time per case")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="atelier-bench-kiosk-") as tmp_name:
        tmp = Path(tmp_name)
        bundle_dir = args.bundle or export_edge_bundle(tmp)
        from edge.bundle import load_bundle

        bundle = load_bundle(bundle_dir)
        print(f"CPU: {os.cpu_count()} cores; bundle {bundle.name} ({bundle.preset}, {bundle.size_px} px, "
              f"{bundle.quantization}, batches {list(bundle.batches)})")
        raw = RawInterpreter(bundle_dir)
        config = tmp / "kiosk.toml"
        config.write_text("max_designs = 64\nqueue_limit = 256\n")
        process, url = start_kiosk(bundle_dir, "--config", str(config))
        try:
            print(f"kiosk at {url}; POST /api/generate, closed loop, {args.seconds:g} s per case; the raw "
                  "interpreter is measured in this process just before each case (the machine may be shared)")
            print(f"{'designs':>7} {'clients':>7} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'raw p50':>8} "
                  f"{'raw p99':>8} {'ideal ms':>9} {'overhead':>9} {'lanes ms':>9} {'vs lanes':>9} "
                  f"{'designs/s':>10} {'raw d/s':>8}")
            for n in BATCHES:
                for clients in CLIENTS:
                    raw_times = raw.latencies(str(n), args.seconds / 2)
                    raw_p50 = percentile_ms(raw_times, 50)
                    lanes = percentile_ms(raw.lanes_latencies(clients * n, args.seconds / 2), 50)
                    lat = load(url, clients, n, args.seconds)
                    p50, p99 = percentile_ms(lat, 50), percentile_ms(lat, 99)
                    ideal = clients * raw_p50
                    rate = len(lat) * n / args.seconds
                    print(f"{n:>7} {clients:>7} {len(lat):>8} {p50:>8.2f} {p99:>8.2f} {raw_p50:>8.2f} "
                          f"{percentile_ms(raw_times, 99):>8.2f} {ideal:>9.2f} {p50 / ideal - 1:>+9.1%} "
                          f"{lanes:>9.2f} {p50 / lanes - 1:>+9.1%} {rate:>10.1f} {1000 * n / raw_p50:>8.1f}")
            b8 = percentile_ms(raw.latencies("b8-model", args.seconds / 2), 50)
            fps = attract_fps(url, args.seconds)
            raw_fps = 1000 * max(bundle.batches) / b8
            print(f"\nattract mode: {fps:.1f} frames/s over HTTP (goal >= 10); the batch-8 model alone "
                  f"{raw_fps:.1f} frames/s; ratio {fps / raw_fps:.2f}")
        finally:
            process.terminate()
            process.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())

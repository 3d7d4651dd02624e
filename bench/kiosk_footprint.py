"""Benchmark: the kiosk process's cold start and resident memory with the camera on, against the budgets.

Starts `atelier kiosk` on a bundle (default: models/default) with a camera (default: the synthetic one), as
`make demo` does, and measures:
- cold start: process start -> READY logged, and -> the first design shown (8 designs generated and the first
  one's PNG fetched, as the page does); budget 3 s;
- resident memory (VmRSS, and its peak VmHWM) after a shopper-like load: grids of 8 designs with every picture
  fetched, neighbours and mixes, attract-mode walk strips and a camera preview stream; budget 300 MB (the kiosk
  shares a 1 GB Coral Dev Board or a 4 GB Jetson Nano with Chromium);
- whether the process mapped any TensorFlow library (the edge side must not).

Usage: .venv/bin/python bench/kiosk_footprint.py [--bundle DIR] [--camera URI] [--grids N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from kiosk import start_kiosk  # noqa: E402  (bench/kiosk.py: starts the kiosk process, waits for READY)

BUDGET_START_S = 3.0
BUDGET_RSS_MB = 300.0


def status_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def tensorflow_mapped(pid: int) -> list[str]:
    """Shared objects of the process whose path names TensorFlow."""
    libs = {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if "/" in line}
    return sorted(lib for lib in libs if "tensorflow" in lib.lower())


def shopper_load(c: httpx.Client, grids: int) -> int:
    """Grids with every picture fetched, a "more like this" and a mix per grid, walk strips, each grid's first
    design at 2x (the detail view: the learned upscaler when the bundle has one), "Design from my garment" from
    the camera (its encoder and search catalogue) and a preview."""
    designs = 0
    for g in range(grids):
        grid = c.post("/api/generate", json={"n": 8}).json()["designs"]
        near = c.post("/api/neighbours", json={"id": grid[0]["id"], "n": 8}).json()["designs"]
        mix = c.post("/api/mix", json={"a": grid[1]["id"], "b": grid[2]["id"]}).json()["designs"]
        for d in grid + near + mix:
            c.get(d["url"]).raise_for_status()
        designs += len(grid) + len(near) + len(mix)
        c.get("/api/walk.png", params={"seed": g, "start": 0, "count": 16}).raise_for_status()
        c.get(grid[0]["url"], params={"scale": 2}).raise_for_status()
        inspired = c.post("/api/inspire")
        if inspired.status_code == 200:
            for d in inspired.json()["designs"]:
                c.get(d["url"]).raise_for_status()
            designs += len(inspired.json()["designs"])
    with c.stream("GET", "/camera.mjpg") as stream:
        parts = 0
        for chunk in stream.iter_bytes():
            parts += chunk.count(b"--frame")
            if parts >= 30:
                break
    return designs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "default", help="bundle to serve")
    parser.add_argument("--camera", default="synthetic://", help="camera URI (default: synthetic://)")
    parser.add_argument("--grids", type=int, default=30, help="shopper-like rounds of load (each ~22 designs)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    process, url = start_kiosk(args.bundle, "--camera", args.camera)
    ready_s = time.perf_counter() - t0
    try:
        with httpx.Client(base_url=url, timeout=60.0) as c:
            first = c.post("/api/generate", json={"n": 8})
            first.raise_for_status()
            c.get(first.json()["designs"][0]["url"]).raise_for_status()
            first_design_s = time.perf_counter() - t0
            start_kb = status_kb(process.pid)
            designs = shopper_load(c, args.grids)
            backend = c.get("/api/info").json()["backend"]
        mem = status_kb(process.pid)
        tf_libs = tensorflow_mapped(process.pid)
    finally:
        process.terminate()
        process.wait(30)

    rss_mb, peak_mb = mem["VmRSS"] / 1024, mem["VmHWM"] / 1024
    print(f"kiosk on {args.bundle} (runtime {backend}), camera {args.camera}; {designs} designs served, "
          f"every picture fetched, plus walk strips, 2x pictures, designs from the camera and a preview stream")
    print(f"{'measure':<34} {'ours':>10} {'budget':>10} {'ours/budget':>12}")
    print(f"{'start -> READY':<34} {ready_s:>9.2f}s {BUDGET_START_S:>9.1f}s {ready_s / BUDGET_START_S:>12.2f}")
    print(f"{'start -> first design shown':<34} {first_design_s:>9.2f}s {BUDGET_START_S:>9.1f}s "
          f"{first_design_s / BUDGET_START_S:>12.2f}")
    print(f"{'resident memory after load (RSS)':<34} {rss_mb:>8.1f}MB {BUDGET_RSS_MB:>8.0f}MB "
          f"{rss_mb / BUDGET_RSS_MB:>12.2f}")
    print(f"{'peak resident memory (HWM)':<34} {peak_mb:>8.1f}MB {BUDGET_RSS_MB:>8.0f}MB "
          f"{peak_mb / BUDGET_RSS_MB:>12.2f}")
    print(f"resident memory at the first design: {start_kb['VmRSS'] / 1024:.1f} MB; "
          f"TensorFlow libraries mapped: {len(tf_libs)}{' ' + ', '.join(tf_libs) if tf_libs else ''}")
    over = first_design_s > BUDGET_START_S or peak_mb > BUDGET_RSS_MB or tf_libs
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())

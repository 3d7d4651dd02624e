"""Distributed training scaling: img/s of 1 worker vs 2 workers pinned to one core each, and 1 vs 2 logical devices.

Every run is a real `atelier train` on procedural garments with the same global batch; the img/s is the chief's
second epoch (the first one includes tracing). Scaling efficiency = (img/s with 2) / (2 x img/s with 1): 100 % is
perfect linear scaling. Workers talk over gRPC on 127.0.0.1 (MultiWorkerMirroredStrategy); the logical devices
are one process split with --cpu-devices 2 (MirroredStrategy), both cores allowed.

    python bench/distributed_scaling.py [--preset tiny] [--size 32] [--batch-size 32] [--per-class 48]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _epoch2_img_s(run: Path) -> float:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return float(rows[-1]["img_per_s"])


def _single(args: list[str], cores: str, extra: list[str]) -> float:
    run = Path(args[args.index("--out") + 1])
    command = ["nice", "-n", "5", "taskset", "-c", cores, sys.executable, "-m", "atelier", "train", *args, *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    if done.returncode:
        raise SystemExit(f"training failed:\n{done.stderr[-2000:]}")
    return _epoch2_img_s(run)


def _cluster(args: list[str], tmp: Path) -> float:
    from trainer.local_cluster import start_workers, wait_all

    run = Path(args[args.index("--out") + 1])
    workers = start_workers([args, args], tmp / "logs", cpus=[0, 1], nice=5)  # worker 1 never writes --out
    codes = wait_all(workers, timeout_s=1200)
    if codes != [0, 0]:
        raise SystemExit(f"workers failed {codes}:\n{workers[0].output()[-2000:]}")
    return _epoch2_img_s(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32, help="the global batch (the same in every run)")
    parser.add_argument("--per-class", type=int, default=48, help="procedural garments per class (3 classes)")
    opts = parser.parse_args()
    from edge.procedural_garments import write_dataset

    with tempfile.TemporaryDirectory(prefix="atelier-scaling-") as tmp_name:
        tmp = Path(tmp_name)
        data = write_dataset(tmp / "data", n_per_class=opts.per_class, size_px=48, seed=7)

        def args(name: str) -> list[str]:
            return ["--data", str(data), "--out", str(tmp / name), "--preset", opts.preset, "--size", str(opts.size),
                    "--batch-size", str(opts.batch_size), "--epochs", "2", "--steps-per-checkpoint", "0",
                    "--keep-epochs", "2", "--no-progress"]

        steps = 3 * opts.per_class // opts.batch_size
        print(f"{opts.preset} {opts.size} px, global batch {opts.batch_size}, {steps} steps per epoch, "
              f"{os.cpu_count()} CPUs (shared machine: the figures are noisy)")
        one_core = _single(args("one-worker"), "0", [])
        two_workers = _cluster(args("two-workers"), tmp)
        print(f"1 worker, 1 core            : {one_core:8.1f} img/s")
        print(f"2 workers, 1 core each      : {two_workers:8.1f} img/s   speed-up {two_workers / one_core:.2f}x, "
              f"scaling efficiency {two_workers / (2 * one_core):.0%}")
        one_device = _single(args("one-device"), "0,1", [])
        two_devices = _single(args("two-devices"), "0,1", ["--cpu-devices", "2"])
        print(f"1 device, 2 cores           : {one_device:8.1f} img/s")
        print(f"2 logical devices, 2 cores  : {two_devices:8.1f} img/s   ratio {two_devices / one_device:.2f}x")


if __name__ == "__main__":
    main()

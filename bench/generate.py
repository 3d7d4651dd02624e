"""Benchmark: designs per second from TFLite bundles (int8, fp16, fp32) against the float Keras generators.

One run on this CPU. The `edge` generator (untrained: speed does not depend on the weights) is exported with the
real exporter as int8, fp16 and fp32 bundles and run through `DesignGenerator` (quantize, invoke, postprocess to
uint8) with 1 and 2 threads at batch 1 and 8. The alternatives are the same `edge` generator in Keras and the
paper's `seed` generator in Keras, both float, both postprocessed to uint8 too; Keras is timed both eagerly and
through its compiled predict function, and the faster of the two is the one compared.

Goals (batch 1): edge int8 >= 5x faster than edge in Keras, >= 30x faster than seed in Keras.

Usage: .venv/bin/python bench/generate.py [--reps N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np


def median_ms(fn: Callable[[], object], reps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def write_run(run_dir: Path, cfg, model) -> None:
    """A run folder holding an untrained generator, as the exporter expects it."""
    run_dir.mkdir(parents=True)
    model.save(run_dir / "generator.keras")
    (run_dir / "config.json").write_text(json.dumps(cfg.to_json()))
    summary = {
        "steps": 0,
        "epochs_done": 0,
        "images_seen": 0,
        "img_per_s": None,
        "wall_s": 0,
        "data": {"dir": "", "n_images": 0, "classes": []},
        "command": ["bench/generate.py"],
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))


def keras_calls(model, z: np.ndarray) -> tuple[Callable[[], object], Callable[[], object]]:
    """The float Keras model called eagerly and through predict_on_batch (its compiled graph), to uint8 both."""
    from trainer.run_folder import to_uint8

    feed = {"z": z}
    return (lambda: to_uint8(np.asarray(model(feed, training=False))), lambda: to_uint8(model.predict_on_batch(feed)))


def alternating_block_medians(calls: dict[str, Callable[[], object]], rounds: int, per_block: int) -> dict[str, float]:
    """Median ms of each call, timed in blocks that take turns, so that load from other processes on this shared
    machine hits every candidate alike. Blocks rather than single calls: TensorFlow's thread pools keep spinning
    for a while after a call and would slow whatever runs right after them; each block starts with 2 untimed calls.
    """
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            for _ in range(2):
                fn()
            for _ in range(per_block):
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30, help="timed repetitions per case (median reported)")
    args = parser.parse_args()

    import logging

    import keras
    import tensorflow as tf

    logging.basicConfig(level=logging.WARNING)
    from edge.bundle import load_bundle
    from edge.designs import DesignGenerator
    from trainer.config import preset
    from trainer.export import ExportOptions, export_bundle
    from trainer.networks import build_generator, generator_macs

    keras.utils.set_random_seed(0)
    edge_cfg, seed_cfg = preset("edge"), preset("seed")
    edge_model, seed_model = build_generator(edge_cfg), build_generator(seed_cfg)
    print(f"CPU: {os.cpu_count()} cores; TensorFlow {tf.__version__} (intra-op threads: all cores)")
    for name, cfg, model in (("edge", edge_cfg, edge_model), ("seed", seed_cfg, seed_model)):
        print(
            f"{name}: {cfg.size_px} px, z {cfg.z_dim}, {model.count_params() / 1e6:.2f} M params, "
            f"{generator_macs(model) / 1e6:.0f} M MACs per design"
        )

    rows: list[tuple[str, int, int, float]] = []  # (what, batch, threads, ms per call)
    with tempfile.TemporaryDirectory(prefix="atelier-bench-") as tmp:
        run_dir = Path(tmp) / "edge-run"
        write_run(run_dir, edge_cfg, edge_model)
        generators = {}
        for fmt in ("int8", "fp16", "fp32"):
            out = Path(tmp) / f"edge-{fmt}"
            options = ExportOptions(fmt=fmt, batches=(1, 8), force=True, edgetpu_compiler=False)
            result = export_bundle(run_dir, out, options)
            size_kib = (out / "generator_b1.tflite").stat().st_size / 1024
            print(f"exported edge {fmt}: {size_kib:.0f} KiB, parity {result.parity['worst_psnr_db']:.1f} dB")
            bundle = load_bundle(out)
            for batch in (1, 8):
                for threads in (1, 2):
                    generators[fmt, batch, threads] = DesignGenerator(bundle, batch=batch, num_threads=threads)
        for (fmt, batch, threads), gen in generators.items():
            z = gen.sample_latents(batch, seed=0)
            rows.append((f"edge tflite {fmt}", batch, threads, median_ms(partial(gen.generate, z), args.reps)))
        keras_reps = max(5, args.reps // 3)
        for name, model, z_dim in (("edge", edge_model, edge_cfg.z_dim), ("seed", seed_model, seed_cfg.z_dim)):
            for batch in (1, 8):
                z = np.random.default_rng(0).standard_normal((batch, z_dim)).astype(np.float32)
                eager, compiled = keras_calls(model, z)
                rows.append((f"{name} keras eager", batch, 0, median_ms(eager, keras_reps)))
                rows.append((f"{name} keras predict", batch, 0, median_ms(compiled, keras_reps)))

        print()
        print(f"{'model':<22} {'batch':>5} {'threads':>7} {'ms/call':>9} {'ms/design':>10} {'designs/s':>10}")
        for what, batch, threads, ms in rows:
            per = ms / batch
            print(f"{what:<22} {batch:>5} {threads or 'all':>7} {ms:>9.2f} {per:>10.2f} {1000 / per:>10.1f}")

        # The goals, at batch 1, timed in alternating blocks (this machine is shared: load comes and goes).
        int8 = generators["int8", 1, 2]
        z_int8 = int8.sample_latents(1, seed=0)
        edge_eager, edge_predict = keras_calls(edge_model, z_int8)
        z_seed = np.random.default_rng(0).standard_normal((1, seed_cfg.z_dim)).astype(np.float32)
        seed_eager, seed_predict = keras_calls(seed_model, z_seed)
        med = alternating_block_medians(
            {
                "int8": partial(int8.generate, z_int8),
                "edge eager": edge_eager,
                "edge predict": edge_predict,
                "seed eager": seed_eager,
                "seed predict": seed_predict,
            },
            rounds=5,
            per_block=max(4, args.reps // 5),
        )
    print()
    print(
        "batch 1, medians of alternating blocks (ms per design): " + ", ".join(f"{k} {v:.2f}" for k, v in med.items())
    )
    edge_keras = min(med["edge eager"], med["edge predict"])
    seed_keras = min(med["seed eager"], med["seed predict"])
    print(
        f"edge int8 TFLite (2 threads) vs edge in Keras, faster of eager/predict: "
        f"{edge_keras / med['int8']:.1f}x (goal >= 5x); vs eager call: {med['edge eager'] / med['int8']:.1f}x"
    )
    print(
        f"edge int8 TFLite (2 threads) vs seed in Keras, faster of eager/predict: "
        f"{seed_keras / med['int8']:.1f}x (goal >= 30x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

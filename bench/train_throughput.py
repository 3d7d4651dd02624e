"""Training throughput: img/s of one training step of the `seed` and `edge` presets at 128 px, in one run.

Each preset runs its own batch size (seed 64 as in the paper, edge 32) through the real `GAN.train_step` under
fit(); warm-up steps (tracing) are excluded; the median step time over the timed steps is reported.

    python bench/train_throughput.py [--size 128] [--steps 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def step_times(preset_name: str, size: int, steps: int, warmup: int) -> tuple[int, list[float]]:
    import keras
    import numpy as np
    import tensorflow as tf

    from trainer.config import preset
    from trainer.train import _build

    cfg = preset(preset_name, size_px=size)
    keras.utils.set_random_seed(0)
    gan = _build(cfg)
    rng = np.random.default_rng(0)
    real = tf.constant(rng.uniform(-1, 1, (cfg.batch_size, size, size, 3)).astype(np.float32))
    labels = tf.zeros((cfg.batch_size,), tf.int32)
    ds = tf.data.Dataset.from_tensors((real, labels)).repeat()
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            float(logs["d_loss_step"])  # wait for the step to finish
            times.append(time.perf_counter() - self.t0)

    gan.fit(ds, epochs=1, steps_per_epoch=warmup + steps, verbose=0, callbacks=[Timer()])
    return cfg.batch_size, times[warmup:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    import tensorflow as tf

    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, {args.size} px, {args.steps} timed steps")
    results = {}
    for name in ("seed", "edge"):
        batch, times = step_times(name, args.size, args.steps, args.warmup)
        med = statistics.median(times)
        results[name] = batch / med
        print(f"{name:5s} batch {batch:3d}: median step {med * 1000:8.1f} ms  -> {batch / med:8.1f} img/s")
    print(f"edge / seed img/s ratio: {results['edge'] / results['seed']:.1f}x  (goal >= 10x)")


if __name__ == "__main__":
    main()

"""`train(cfg, run_dir)`: build the GAN, feed it the data with fit(), checkpoint, sample, log — and resume exactly."""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.designs import sample_prior
from edge.errors import UserError
from trainer import checkpoints, distribute, run_folder
from trainer.config import TrainConfig
from trainer.dataset import TrainingData, make_dataset
from trainer.train_start import start_run

log = logging.getLogger(__name__)

SAMPLE_GRID_N = 36  # fixed latents drawn for the per-epoch sample grid (6 x 6)


class TrainingDiverged(UserError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    epochs_done: int
    img_per_s: float
    wall_s: float
    out_of_time: bool = False
    is_chief: bool = True  # False on the other workers of a multi-worker run (their folder was temporary)


def _build(cfg: TrainConfig, topology: distribute.Topology | None = None):
    import keras
    import tensorflow as tf

    from trainer.gan import GAN
    from trainer.networks import build_discriminator, build_generator

    if tf.config.list_logical_devices("GPU"):
        keras.mixed_precision.set_global_policy("mixed_float16")
    topology = topology or distribute.make_topology()
    with topology.strategy.scope():
        generator = build_generator(cfg)
        discriminator = build_discriminator(cfg)
        ema = None
        if cfg.ema_decay is not None:
            ema = build_generator(cfg, name="ema_generator")
            ema.set_weights(generator.get_weights())
        if topology.num_replicas > 1:
            distribute.synchronize_batch_norm(*[m for m in (generator, discriminator, ema) if m is not None])
        gan = GAN(cfg, generator, discriminator, ema)
        g_opt = keras.optimizers.Adam(cfg.lr_g, beta_1=cfg.beta1, beta_2=cfg.beta2)
        d_opt = keras.optimizers.Adam(cfg.lr_d, beta_1=cfg.beta1, beta_2=cfg.beta2)
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            g_opt = keras.optimizers.LossScaleOptimizer(g_opt)
            d_opt = keras.optimizers.LossScaleOptimizer(d_opt)
        gan.compile(g_optimizer=g_opt, d_optimizer=d_opt)
        # Build optimizer slots now so a checkpoint can be restored before the first step.
        g_opt.build(generator.trainable_variables)
        d_opt.build(discriminator.trainable_variables)
    return gan


def _fixed_latents(cfg: TrainConfig) -> list[np.ndarray]:
    z = sample_prior(SAMPLE_GRID_N, cfg.z_dim, cfg.z_distribution, cfg.seed + 20_241)
    if not cfg.conditional:
        return [z]
    n_classes = len(cfg.class_names or [])
    onehot = np.eye(n_classes, dtype=np.float32)[np.arange(SAMPLE_GRID_N) % n_classes]
    return [z, onehot]


class _StepCallback:
    """Progress bar, NaN guard and step checkpoints; built lazily as a keras Callback."""

    @staticmethod
    def make(gan, cfg: TrainConfig, ckpt_dir: Path, bar, epoch_box: list[int], deadline: float | None = None):
        import keras

        class StepCallback(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.diverged: str | None = None
                self.out_of_time = False
                self.t0 = time.perf_counter()
                self.steps = 0

            def on_train_batch_end(self, batch, logs=None):
                logs = logs or {}
                d, g = float(logs.get("d_loss_step", 0.0)), float(logs.get("g_loss_step", 0.0))
                step = int(gan.global_step.numpy())
                if not (math.isfinite(d) and math.isfinite(g)):
                    self.diverged = f"step {step}: d_loss={d}, g_loss={g}"
                    gan.stop_training = True
                    return
                self.steps += 1
                img_s = self.steps * cfg.batch_size / max(time.perf_counter() - self.t0, 1e-9)
                bar.update(1)
                bar.set_postfix_str(f"epoch {epoch_box[0] + 1}/{cfg.epochs} d {float(logs['d_loss']):.3f} "
                                    f"g {float(logs['g_loss']):.3f} {img_s:.1f} img/s")
                if deadline is not None and time.perf_counter() >= deadline:
                    self.out_of_time = True
                    gan.stop_training = True
                    return
                # The epoch's last step is checkpointed by the loop, after the epoch's files are written.
                if cfg.steps_per_checkpoint > 0 and step % cfg.steps_per_checkpoint == 0 and step != epoch_box[1]:
                    try:
                        checkpoints.save_checkpoint(gan, ckpt_dir, cfg.keep_checkpoints)
                    except checkpoints.NonFiniteStateError as exc:
                        self.diverged = str(exc)
                        gan.stop_training = True

        return StepCallback()


def train(cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False, command: list[str] | None = None,
          progress: bool = True, data: TrainingData | None = None,
          time_budget_s: float | None = None, cpu_devices: int | None = None) -> TrainResult:
    """Train (or resume) a run in `run_dir`.

    Args:
        cfg: the resolved configuration (with --resume, only `epochs` is taken from it; the rest is the run's own).
        run_dir: the run folder; created if missing.
        resume: continue from the newest complete checkpoint.
        command: the command line, recorded in summary.json.
        progress: show a progress bar.
        data: preloaded training data (tests); read from cfg.data_dir when None.
        time_budget_s: stop once the run's wall time (all sessions, data loading excluded) reaches this, mid-epoch
            if need be; the stopping point is checkpointed, so --resume with a larger budget or more epochs goes on.
        cpu_devices: split the CPU into this many logical devices and mirror over them (the N-GPU code path).

    With TF_CONFIG set this process is one worker of a cluster (trainer.distribute): worker 0 writes `run_dir`,
    the others train in a temporary folder removed at the end.
    """
    topology = distribute.make_topology(cpu_devices)  # first: the CPU split and the cluster need a fresh TF
    if topology.kind == "multi-worker" and time_budget_s is not None:
        raise UserError("--time-budget is not supported across workers (each would stop at its own step); "
                        "use --epochs")
    if not topology.is_chief:
        # The other workers compute what the chief computes and write it to a folder nobody reads.
        scratch = Path(tempfile.mkdtemp(prefix=f"atelier-worker{topology.worker_id}-"))
        try:
            result = _train(cfg, scratch, resume, command, progress, data, time_budget_s, topology)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        result.is_chief = False
        return result
    return _train(cfg, Path(run_dir), resume, command, progress, data, time_budget_s, topology)


def _train(cfg: TrainConfig, run_dir: Path, resume: bool, command: list[str] | None, progress: bool,
           data: TrainingData | None, time_budget_s: float | None, topology: distribute.Topology) -> TrainResult:
    import keras
    import tensorflow as tf
    from tqdm import tqdm

    cfg, data, spe = start_run(cfg, run_dir, resume, data, progress, topology)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / run_folder.CONFIG)
    data.report.save(run_dir / run_folder.DATA_REPORT)

    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
    gan = _build(cfg, topology)
    ckpt_dir = run_dir / "checkpoints"
    previous = run_folder.read_summary(run_dir) if resume and (run_dir / run_folder.SUMMARY).is_file() else {}
    if resume and topology.is_chief:
        ckpt = checkpoints.read_latest(ckpt_dir)
        if ckpt is None and checkpoints.list_checkpoints(ckpt_dir):
            # Starting over would write new checkpoints over the damaged ones and replace the run's generator.
            raise UserError(f"none of the checkpoints in {ckpt_dir} can be read (damaged: "
                            f"{', '.join(p.name for p in checkpoints.list_checkpoints(ckpt_dir))}); move them out of "
                            "the folder to train the run again from step 0, or give a new --out")
        if ckpt is None:
            log.warning("no complete checkpoint in %s; starting the run from step 0", ckpt_dir)
            previous = {}
        else:
            try:
                checkpoints.restore(gan, ckpt)
            except ValueError as exc:
                raise UserError(str(exc)) from exc
            log.info("resuming from %s (step %d)", ckpt.path.name, ckpt.step)
    if resume:
        distribute.broadcast_from_chief(topology, checkpoints.all_variables(gan))

    total_steps = spe * cfg.epochs
    total_steps = spe * cfg.epochs
    step = int(gan.global_step.numpy())
    if step >= total_steps:
        log.info("run already at step %d of %d; nothing to do", step, total_steps)
    fixed = _fixed_latents(cfg)
    writer = tf.summary.create_file_writer(str(run_dir / "tensorboard"))
    wall0 = time.perf_counter()
    deadline = None
    if time_budget_s is not None:
        if time_budget_s <= 0:
            raise UserError(f"the time budget must be positive, got {time_budget_s} s")
        deadline = wall0 + time_budget_s - float(previous.get("wall_s", 0.0))
        if deadline <= wall0:
            log.info("the run has used its time budget (%.0f s of %.0f s); nothing to do",
                     float(previous.get("wall_s", 0.0)), time_budget_s)
    train_s = 0.0
    images_this_session = 0
    epoch_box = [step // spe, 0]  # [epoch index, its last global step]
    bar = tqdm(total=total_steps, initial=step, unit="step", desc="training", disable=not progress,
               dynamic_ncols=True)
    callback = _StepCallback.make(gan, cfg, ckpt_dir, bar, epoch_box, deadline)
    out_of_time = deadline is not None and deadline <= wall0
    try:
        for epoch in range(step // spe, cfg.epochs):
            if out_of_time:
                break
            first = max(step, epoch * spe)
            last = (epoch + 1) * spe
            epoch_box[:] = [epoch, last]
            t0 = time.perf_counter()
            try:
                gan.fit(_feed(data, cfg, topology, spe, first, last), epochs=epoch + 1, initial_epoch=epoch,
                        steps_per_epoch=last - first, verbose=0, callbacks=[callback], shuffle=False)
            except distribute.collective_errors() as exc:
                if topology.kind != "multi-worker":
                    raise
                kept = checkpoints.list_checkpoints(ckpt_dir)
                raise distribute.lost_peer(topology, exc, kept[-1].name if kept else "none yet") from exc
            if callback.diverged:
                raise _diverged(callback.diverged, ckpt_dir)
            epoch_s = time.perf_counter() - t0
            train_s += epoch_s
            reached = int(gan.global_step.numpy())
            n_steps = reached - first
            images_this_session += n_steps * cfg.batch_size
            step = reached
            mid_epoch = step < last  # only the time budget stops an epoch early
            if mid_epoch:
                # The run's generator and samples show where it got to; no epoch row or snapshot.
                _time_is_up(gan, run_dir, step, fixed, time_budget_s or 0.0)
            else:
                _end_of_epoch(gan, cfg, run_dir, epoch + 1, step, n_steps * cfg.batch_size / epoch_s, fixed, writer,
                              float(callback.model.d_loss_tracker.result()),
                              float(callback.model.g_loss_tracker.result()))
            wall_s = float(previous.get("wall_s", 0.0)) + time.perf_counter() - wall0
            images_seen = int(previous.get("images_seen", 0)) + images_this_session
            summary = {
                "steps": step,
                "epochs_done": epoch + (0 if mid_epoch else 1),
                "epochs_trained": round(step / spe, 3),
                "images_seen": images_seen,
                "img_per_s": round(images_this_session / max(train_s, 1e-9), 2),
                "wall_s": round(wall_s, 2),
                "data": {"dir": data.report.data_dir, "n_images": data.report.n_used, "classes": data.class_names},
                "command": command or previous.get("command") or [],
            }
            if time_budget_s is not None:
                summary["time_budget_s"] = time_budget_s
            # The budget may also run out while the epoch's files are written: then no next epoch starts.
            out_of_time = mid_epoch or (deadline is not None and time.perf_counter() >= deadline)
            if out_of_time:
                summary["stopped"] = "time budget"
            run_folder.write_json_atomic(run_dir / run_folder.SUMMARY, summary)
            # Last, so a kill before it resumes from an earlier checkpoint and redoes the epoch's files too.
            try:
                checkpoints.save_checkpoint(gan, ckpt_dir, cfg.keep_checkpoints)
            except checkpoints.NonFiniteStateError as exc:
                raise _diverged(str(exc), ckpt_dir) from exc
    finally:
        bar.close()
        writer.close()
    summary = run_folder.read_summary(run_dir) if (run_dir / run_folder.SUMMARY).is_file() else {}
    return TrainResult(run_dir, int(gan.global_step.numpy()), int(summary.get("epochs_done", 0)),
                       float(summary.get("img_per_s", 0.0)), float(summary.get("wall_s", 0.0)), out_of_time)


def _feed(data: TrainingData, cfg: TrainConfig, topology: distribute.Topology, spe: int, first: int, last: int):
    """Steps [first, last) as fit() input: this worker's rows of each global batch, one element per replica."""
    rows = cfg.batch_size // topology.num_workers
    if topology.num_replicas == 1:
        return make_dataset(data, cfg.batch_size, cfg.seed, first, last, spe=spe)

    def per_worker(context):
        return make_dataset(data, cfg.batch_size, cfg.seed, first, last, spe=spe,
                            first_row=topology.worker_id * rows, rows=rows,
                            per_replica=cfg.batch_size // topology.num_replicas)

    return topology.strategy.distribute_datasets_from_function(per_worker)


def _write_samples(gan, run_dir: Path, name: str, fixed: list[np.ndarray]) -> np.ndarray:
    """The sample grid of the fixed latents as samples/NAME.png and the run's generator.keras; the grid."""
    generator = gan.exported_generator
    images = run_folder.to_uint8(generator(fixed, training=False))
    grid = run_folder.grid_image(images, cols=int(math.sqrt(SAMPLE_GRID_N)))
    run_folder.write_png(run_dir / "samples" / f"{name}.png", grid)
    run_folder.save_generator_atomic(generator, run_dir / run_folder.GENERATOR)
    return grid


def _time_is_up(gan, run_dir: Path, step: int, fixed: list[np.ndarray], budget_s: float) -> None:
    _write_samples(gan, run_dir, f"step-{step:07d}", fixed)
    log.info("time budget of %.0f s used up at step %d; stopping (resume with a larger budget to go on)",
             budget_s, step)


def _diverged(reason: str, ckpt_dir: Path) -> TrainingDiverged:
    kept = checkpoints.list_checkpoints(ckpt_dir)
    return TrainingDiverged(
        f"training diverged ({reason}); the last good checkpoint is "
        f"{kept[-1] if kept else 'none (diverged before the first one)'}. Lower the learning rates "
        f"or resume with --resume to retry from it.")


def _end_of_epoch(gan, cfg: TrainConfig, run_dir: Path, epoch: int, step: int, img_per_s: float,
                  fixed: list[np.ndarray], writer, d_loss: float, g_loss: float) -> None:
    import tensorflow as tf

    grid = _write_samples(gan, run_dir, f"epoch-{epoch:04d}", fixed)
    row = {"epoch": epoch, "step": step, "d_loss": round(d_loss, 5), "g_loss": round(g_loss, 5),
           "img_per_s": round(img_per_s, 2), "time": time.time()}
    with open(run_dir / run_folder.METRICS, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    with writer.as_default(step=step):
        tf.summary.scalar("loss/d", d_loss)
        tf.summary.scalar("loss/g", g_loss)
        tf.summary.scalar("img_per_s", img_per_s)
        tf.summary.image("samples", grid[None], max_outputs=1)
    writer.flush()
    if epoch in cfg.keep_epochs or epoch == cfg.epochs:
        run_folder.save_generator_atomic(gan.exported_generator, run_dir / "snapshots" / f"epoch-{epoch:04d}" /
                                         run_folder.GENERATOR)
    run_folder.plot_losses(run_folder.read_metrics(run_dir), run_dir / "loss_curve.png")
    log.info("epoch %d: d_loss %.4f g_loss %.4f, %.1f img/s", epoch, d_loss, g_loss, img_per_s)

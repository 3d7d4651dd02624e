"""`atelier finetune`: adapt a trained run to the kiosk's captures, evaluate before/after, export a new bundle.

Recipe (few-shot GAN adaptation):
- Start from the run's newest checkpoint: G, D and the EMA generator as they were (no optimizer state: the new
  optimizers start fresh at the run's learning rates).
- FreezeD (Mo et al. 2020): the lower discriminator blocks keep their weights (`trainable = False`; BatchNorm in
  them runs in inference mode); only the last `train_d_blocks` conv blocks, the logit and the class projection
  learn. The low-level features D learned on the large dataset carry over; the few captures cannot overfit them.
- DiffAugment on real and fake in both updates (the run's policy, or colour + translation + cutout when the run
  had none): with tens of captures, D would otherwise memorise them within a few hundred steps.
- Data: the captures alone, or mixed with the run's original data (`mix_original`), the captures repeated so
  they make up `capture_share` of what the model sees.

Classes:
- an unconditional model learns from every capture (their classes only label the evaluation);
- a conditional model keeps its class list; a capture class it already has trains that class; a capture class it
  lacks is appended as a *new class*: the generator's class one-hot input gets one more column, whose weights in
  the first (projection) layer start as the mean of the existing classes' weights, and the projection
  discriminator's class embedding gets one more row, also the mean of the existing rows. Every other weight is
  copied. The new class therefore starts as "an average garment" and the fine-tune pulls it toward the captures;
  the existing classes keep their indices, so their design IDs on the kiosk stay meaningful.

Evaluation, before and after, on each capture class: designs of that class (conditional) or of the model
(unconditional) against the captures, KID (and FCD once a class has more captures than feature dimensions) in the
garment feature network's space (`trainer.features`), or — when no feature network is installed — in a simple
pixel-statistics space (8x8 colour thumbnails plus colour histograms), which the report names.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.designs import sample_prior
from edge.errors import UserError
from trainer import checkpoints, run_folder
from trainer.config import TrainConfig
from trainer.dataset import DataReport, TrainingData, load_training_data, make_dataset

log = logging.getLogger(__name__)

FINETUNE_REPORT = "finetune.json"
DEFAULT_DIFFAUGMENT = "color,translation,cutout"
EVAL_SEED = 4242


@dataclass
class FinetuneOptions:
    """What `atelier finetune` was asked for."""

    steps: int = 300  # optimisation steps (one D and one G update each)
    mix_original: bool = False  # also train on the run's original data (config.json data_dir or original_data)
    original_data: str | None = None  # the original data, when it moved since training
    capture_share: float = 0.5  # with mix_original: the share of captures in what the model sees
    train_d_blocks: int = 2  # discriminator conv blocks that keep learning (the rest is frozen: FreezeD)
    classes: list[str] | None = None  # capture classes to use (default: all of them)
    batch_size: int | None = None  # default: the run's (at most the number of images)
    seed: int | None = None  # default: the run's seed + 1
    eval_n: int = 64  # designs generated per class for the before/after evaluation
    features_dir: str | None = None  # garment feature network folder (default: the shipped one)
    export: bool = True  # export an int8 bundle of the result
    bundle_out: str | None = None  # where the bundle goes (default: beside OUT, named <OUT>-<fmt>)
    fmt: str = "int8"  # bundle format
    progress: bool = True  # progress bar
    command: list[str] = field(default_factory=list)  # recorded in summary.json


@dataclass
class FinetuneResult:
    """The fine-tuned run, its report and the exported bundle (None when not exported)."""

    run_dir: Path
    report: dict[str, Any]
    bundle_dir: Path | None


# Weights --------------------------------------------------------------------------------------------------


def _assign(model, values: list[np.ndarray], what: str, source: Path) -> None:
    try:
        checkpoints.assign_checked(model.weights, values, what, source)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def widen_rows(old: np.ndarray, new_shape: tuple[int, ...], n_old_classes: int, axis: int = 0) -> np.ndarray:
    """Grow a weight along `axis` for new classes: old rows kept, each new row the mean of the last
    `n_old_classes` rows (the class rows: the one-hot part of the G projection kernel, or D's embedding, along
    axis 0; the auxiliary classifier's kernel along its last axis)."""
    if axis != 0:
        shape = list(new_shape)
        shape.insert(0, shape.pop(axis))  # the class axis first
        return np.moveaxis(widen_rows(np.moveaxis(old, axis, 0), tuple(shape), n_old_classes), 0, axis)
    extra = new_shape[0] - old.shape[0]
    if extra <= 0 or old.shape[1:] != tuple(new_shape[1:]) or n_old_classes < 1:
        raise ValueError(f"cannot widen {old.shape} to {new_shape}")
    mean = old[-n_old_classes:].mean(axis=0, keepdims=True)
    return np.concatenate([old, np.repeat(mean, extra, axis=0)]).astype(old.dtype)


def _class_axis(old_shape: tuple[int, ...], new_shape: tuple[int, ...]) -> int:
    """The axis a class weight grows along: the last one when only it differs (a classifier kernel), else 0."""
    if len(old_shape) >= 2 and old_shape[:-1] == new_shape[:-1]:
        return len(old_shape) - 1
    return 0


def transfer_weights(old_model, new_model, n_old_classes: int) -> list[str]:
    """Copy every weight of `old_model` into `new_model` by layer name, widening class rows where the new model
    has more classes. Returns the names of the widened weights."""
    widened = []
    for layer in new_model.layers:
        if not layer.weights:
            continue
        old_layer = old_model.get_layer(layer.name)
        for new_w, old_w in zip(layer.weights, old_layer.weights, strict=True):
            value = np.asarray(old_w.numpy())
            if tuple(new_w.shape) != value.shape:
                value = widen_rows(value, tuple(new_w.shape), n_old_classes,
                                   _class_axis(value.shape, tuple(new_w.shape)))
                widened.append(new_w.path)
            new_w.assign(value)
    return widened


def freeze_lower_blocks(discriminator, train_blocks: int) -> list[str]:
    """FreezeD: mark every layer of D's conv blocks but the last `train_blocks` non-trainable.

    A block is a conv layer with the BatchNorm/activation layers after it. Returns the frozen layers' names.
    """
    blocks: list[list[Any]] = []
    for layer in discriminator.layers:
        kind = type(layer).__name__
        if "Conv" in kind:
            blocks.append([layer])
        elif blocks and kind in ("BatchNormalization", "LeakyReLU", "ReLU"):
            blocks[-1].append(layer)
    frozen = []
    for block in blocks[: max(0, len(blocks) - train_blocks)]:
        for layer in block:
            layer.trainable = False
            frozen.append(layer.name)
    return frozen


# Data -----------------------------------------------------------------------------------------------------


def _merge(captures: TrainingData, class_names: list[str], original: TrainingData | None, share: float,
           seed: int) -> tuple[TrainingData, dict[str, Any]]:
    """Captures (and the original data, captures repeated to `share`) with labels in `class_names`."""
    cap_labels = np.asarray([class_names.index(captures.class_names[i]) for i in captures.labels], np.int32)
    info: dict[str, Any] = {"n_captures": len(captures.images), "n_original": 0, "capture_repeats": 1}
    if original is None:
        return TrainingData(captures.images, cap_labels, class_names, captures.report), info
    orig_labels = np.asarray([class_names.index(original.class_names[i]) if original.class_names[i] in class_names
                              else -1 for i in original.labels], np.int32)
    keep = orig_labels >= 0
    n_orig, n_cap = int(keep.sum()), len(captures.images)
    repeats = max(1, math.ceil(share / max(1e-6, 1.0 - share) * n_orig / n_cap)) if n_orig else 1
    images = np.concatenate([original.images[keep], np.repeat(captures.images, repeats, axis=0)])
    labels = np.concatenate([orig_labels[keep], np.repeat(cap_labels, repeats)])
    order = np.random.default_rng(seed).permutation(len(images))
    info.update(n_original=n_orig, capture_repeats=repeats,
                capture_share=round(n_cap * repeats / max(1, len(images)), 3))
    report = DataReport(data_dir=captures.report.data_dir, class_names=class_names,
                        class_counts={c: int(np.sum(labels == i)) for i, c in enumerate(class_names)},
                        n_files=captures.report.n_files + original.report.n_files, n_used=len(images),
                        skipped=captures.report.skipped + original.report.skipped)
    return TrainingData(images[order], labels[order].astype(np.int32), class_names, report), info


# Evaluation -----------------------------------------------------------------------------------------------


def pixel_features(images: np.ndarray) -> np.ndarray:
    """Simple features of uint8 pictures (N, H, W, 3): an 8x8 colour thumbnail and 8-bin colour histograms."""
    import cv2

    out = []
    for img in images:
        thumb = cv2.resize(img, (8, 8), interpolation=cv2.INTER_AREA).astype(np.float64).ravel() / 255.0
        hist = [np.histogram(img[..., c], bins=8, range=(0, 256))[0] / img[..., c].size for c in range(3)]
        out.append(np.concatenate([thumb, *hist]))
    return np.asarray(out)


class _Featurizer:
    def __init__(self, features_dir: str | None) -> None:
        try:
            from trainer.features import load_feature_net

            self._net = load_feature_net(features_dir)
            self.space = f"garment feature network ({self._net.card.get('sha256', 'unknown')[:12]})"
        except (UserError, ImportError) as exc:
            if features_dir:
                raise
            log.warning("no garment feature network (%s); evaluating in pixel-statistics space", exc)
            self._net = None
            self.space = "pixel statistics (8x8 colour thumbnail + 8-bin colour histograms)"

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if self._net is None:
            return pixel_features(images)
        return self._net(images)[0]


def _designs(generator, cfg: TrainConfig, class_id: int | None, n: int) -> np.ndarray:
    inputs = [sample_prior(n, cfg.z_dim, cfg.z_distribution, EVAL_SEED)]
    if cfg.conditional:
        inputs.append(np.eye(len(cfg.class_names or []), dtype=np.float32)[np.full(n, class_id or 0)])
    return run_folder.to_uint8(generator(inputs, training=False))


def _evaluate(generator, cfg: TrainConfig, captures: TrainingData, featurize: _Featurizer, n: int
              ) -> dict[str, Any]:
    from trainer.feature_distances import fcd, kid

    out: dict[str, Any] = {}
    for i, name in enumerate(captures.class_names):
        real = captures.images[captures.labels == i]
        if len(real) < 2:
            out[name] = {"n_captures": len(real), "note": "fewer than 2 captures: not measured"}
            continue
        class_id = (cfg.class_names or []).index(name) if cfg.conditional else None
        fake = _designs(generator, cfg, class_id, max(n, len(real)))
        fr, ff = featurize(real), featurize(fake)
        k = kid(fr, ff, n_subsets=20)
        # FCD fits a full covariance: with fewer captures than feature dimensions it is degenerate, and KID
        # (unbiased at any sample size) is the number to read.
        f = fcd(fr, ff, n_bootstrap=10).to_json() if len(real) > fr.shape[1] else None
        out[name] = {"n_captures": len(real), "n_designs": len(fake), "kid": k.to_json(), "fcd": f}
    return out


# The fine-tune --------------------------------------------------------------------------------------------


def _load_start(run_dir: Path, cfg: TrainConfig):
    """G, D and EMA of the run as built from its config, with the newest checkpoint's weights."""
    from trainer.networks import build_discriminator, build_generator

    generator, discriminator = build_generator(cfg), build_discriminator(cfg)
    ema = build_generator(cfg, name="ema_generator")
    ckpt = checkpoints.read_latest(run_dir / "checkpoints")
    if ckpt is not None:
        _assign(generator, ckpt.arrays["generator"], "generator", ckpt.path)
        _assign(discriminator, ckpt.arrays["discriminator"], "discriminator", ckpt.path)
        if ckpt.arrays["ema_generator"]:
            _assign(ema, ckpt.arrays["ema_generator"], "ema_generator", ckpt.path)
        else:
            ema.set_weights(generator.get_weights())
        return generator, discriminator, ema, True
    log.warning("%s has no checkpoint: starting G from generator.keras and D from scratch (no FreezeD)", run_dir)
    exported = run_folder.load_generator(run_dir)
    generator.set_weights(exported.get_weights())
    ema.set_weights(exported.get_weights())
    return generator, discriminator, ema, False


def _check_out(out_dir: Path, from_dir: Path) -> None:
    if out_dir.resolve() == from_dir.resolve():
        raise UserError("--out must be a new run folder, not the run you fine-tune from")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"--out {out_dir} already exists and is not empty; choose a new folder")


def finetune(from_run: str | Path, captures: str | Path, out_dir: str | Path,
             options: FinetuneOptions | None = None) -> FinetuneResult:
    """Fine-tune `from_run` on `captures` into the new run folder `out_dir`, evaluate, export a bundle.

    Args:
        from_run: a run folder made by `atelier train` (config.json, checkpoints/, generator.keras), or a bundle
            whose manifest names its float weights (`atelier export --float-weights`).
        captures: a capture store folder or its .tar export (or any folder `atelier train --data` reads).
        out_dir: the new run folder (must not exist or be empty).
        options: steps, mixing, FreezeD depth, export...

    Returns:
        The run folder, the report (also written as finetune.json) and the bundle folder.

    Raises:
        UserError: bad inputs; an export that fails parity (the fine-tuned run is kept and the message says so).
    """
    import keras
    import tensorflow as tf
    from tqdm import tqdm

    from trainer.float_weights import resolve_finetune_source
    from trainer.gan import GAN
    from trainer.networks import build_discriminator, build_generator

    options = options or FinetuneOptions()
    from_run, out_dir = resolve_finetune_source(from_run), Path(out_dir)
    if options.steps < 1:
        raise UserError(f"--steps must be at least 1, got {options.steps}")
    if not 0.0 < options.capture_share < 1.0:
        raise UserError(f"--capture-share must be between 0 and 1, got {options.capture_share}")
    if options.train_d_blocks < 0:
        raise UserError(f"--train-d-blocks must be >= 0, got {options.train_d_blocks}")
    _check_out(out_dir, from_run)
    old_cfg = TrainConfig.from_json(run_folder.read_config(from_run))
    old_classes = list(old_cfg.class_names or [])

    cap = load_training_data(captures, old_cfg.size_px, classes=options.classes, crop=old_cfg.crop,
                             progress=options.progress)
    if old_cfg.conditional:
        new_classes = [c for c in cap.class_names if c not in old_classes]
        class_names = old_classes + new_classes
    else:
        new_classes = []
        class_names = old_classes
        foreign = [c for c in cap.class_names if c not in old_classes]
        if foreign:
            log.warning("the model is unconditional (trained on %s); captures of %s will pull all its designs "
                        "toward them", old_classes, foreign)
        # Unconditional: every capture trains the one model; labels only name the evaluation groups.
        class_names = sorted(set(old_classes) | set(cap.class_names))
    original = None
    if options.mix_original:
        source = options.original_data or old_cfg.data_dir
        if not source or not Path(source).exists():
            raise UserError(f"--mix-original: the run's original data {source!r} is not here; pass "
                            "--original-data DIR")
        original = load_training_data(source, old_cfg.size_px, crop=old_cfg.crop, progress=options.progress)
    seed = old_cfg.seed + 1 if options.seed is None else options.seed
    data, mix_info = _merge(cap, class_names, original, options.capture_share, seed)

    cfg = TrainConfig.from_json(old_cfg.to_json())
    cfg.class_names = class_names
    cfg.seed = seed
    cfg.diffaugment = cfg.diffaugment or DEFAULT_DIFFAUGMENT
    cfg.batch_size = min(options.batch_size or cfg.batch_size, len(data.images))
    cfg.data_dir = str(Path(captures).resolve())
    cfg.validate()

    keras.utils.set_random_seed(seed)
    old_g, old_d, old_ema, from_ckpt = _load_start(from_run, old_cfg)
    generator = build_generator(cfg)
    discriminator = build_discriminator(cfg)
    ema = build_generator(cfg, name="ema_generator")
    n_old = max(1, len(old_classes))
    try:
        widened = transfer_weights(old_g, generator, n_old) + transfer_weights(old_d, discriminator, n_old)
        transfer_weights(old_ema, ema, n_old)
    except ValueError as exc:  # a layer or weight the model's config does not explain
        raise UserError(f"cannot start the fine-tune from {from_run}: its weights do not fit its config ({exc})") \
            from exc
    if cfg.ema_decay is None:
        ema = None
    frozen = freeze_lower_blocks(discriminator, options.train_d_blocks) if from_ckpt else []
    featurize = _Featurizer(options.features_dir)
    cap_eval = TrainingData(cap.images, cap.labels, cap.class_names, cap.report)
    before_g = ema if ema is not None else generator
    before = _evaluate(before_g, cfg, cap_eval, featurize, options.eval_n)
    before_grid = _sample_grid(before_g, cfg, cap.class_names)

    gan = GAN(cfg, generator, discriminator, ema)
    g_opt = keras.optimizers.Adam(cfg.lr_g, beta_1=cfg.beta1, beta_2=cfg.beta2)
    d_opt = keras.optimizers.Adam(cfg.lr_d, beta_1=cfg.beta1, beta_2=cfg.beta2)
    gan.compile(g_optimizer=g_opt, d_optimizer=d_opt)
    g_opt.build(generator.trainable_variables)
    d_opt.build(discriminator.trainable_variables)
    tf.config.experimental.enable_op_determinism()

    out_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(out_dir / run_folder.CONFIG)
    data.report.save(out_dir / run_folder.DATA_REPORT)
    bar = tqdm(total=options.steps, unit="step", desc="fine-tuning", disable=not options.progress,
               dynamic_ncols=True)
    callback = _callback(bar)
    t0 = time.perf_counter()
    try:
        gan.fit(make_dataset(data, cfg.batch_size, cfg.seed, 0, options.steps), epochs=1,
                steps_per_epoch=options.steps, verbose=0, callbacks=[callback], shuffle=False)
    finally:
        bar.close()
    train_s = time.perf_counter() - t0
    if callback.diverged:
        raise UserError(f"fine-tuning diverged ({callback.diverged}); nothing was exported. Try fewer --steps "
                        "or more captures")
    d_loss, g_loss = float(gan.d_loss_tracker.result()), float(gan.g_loss_tracker.result())
    after_g = gan.exported_generator
    after = _evaluate(after_g, cfg, cap_eval, featurize, options.eval_n)
    checkpoints.save_checkpoint(gan, out_dir / "checkpoints", cfg.keep_checkpoints)
    run_folder.save_generator_atomic(after_g, out_dir / run_folder.GENERATOR)
    run_folder.write_png(out_dir / "samples" / "before.png", before_grid)
    run_folder.write_png(out_dir / "samples" / "after.png", _sample_grid(after_g, cfg, cap.class_names))
    images_seen = options.steps * cfg.batch_size
    with open(out_dir / run_folder.METRICS, "a") as fh:
        fh.write(json.dumps({"epoch": 1, "step": options.steps, "d_loss": round(d_loss, 5),
                             "g_loss": round(g_loss, 5), "img_per_s": round(images_seen / train_s, 2),
                             "time": time.time()}) + "\n")
    run_folder.write_json_atomic(out_dir / run_folder.SUMMARY, {
        "steps": options.steps, "epochs_done": 1, "images_seen": images_seen,
        "img_per_s": round(images_seen / train_s, 2), "wall_s": round(train_s, 2),
        "data": {"dir": cfg.data_dir, "n_images": len(data.images), "classes": class_names},
        "command": options.command, "finetuned_from": str(from_run.resolve()),
    })
    report: dict[str, Any] = {
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "from_run": str(from_run.resolve()),
        "captures": str(Path(captures).resolve()),
        "options": {k: v for k, v in asdict(options).items() if k not in ("command", "progress")},
        "conditional": cfg.conditional,
        "classes": {"model_before": old_classes, "model_after": list(cfg.class_names or []),
                    "captured": cap.class_names, "new": new_classes,
                    "new_class_init": "G projection rows and D embedding rows = mean of the existing classes'"
                    if new_classes else None},
        "data": mix_info,
        "freeze_d": {"frozen_layers": frozen, "trainable_blocks": options.train_d_blocks,
                     "from_checkpoint": from_ckpt},
        "widened_weights": widened,
        "diffaugment": cfg.diffaugment,
        "losses": {"d_loss": d_loss, "g_loss": g_loss},
        "evaluation": {"feature_space": featurize.space, "n_designs_per_class": options.eval_n,
                       "before": before, "after": after},
        "bundle": None,
    }
    run_folder.write_json_atomic(out_dir / FINETUNE_REPORT, report)
    log.info("fine-tuned %d steps in %.1f s -> %s; %s", options.steps, train_s, out_dir, _summary(report))
    bundle_dir = None
    if options.export:
        from trainer.export import ExportOptions, export_bundle

        bundle_dir = Path(options.bundle_out) if options.bundle_out else \
            out_dir.parent / f"{out_dir.name}-{options.fmt}"
        try:
            result = export_bundle(out_dir, bundle_dir, ExportOptions(fmt=options.fmt, command=options.command))
        except UserError as exc:
            report["bundle"] = {"error": str(exc)}
            run_folder.write_json_atomic(out_dir / FINETUNE_REPORT, report)
            raise UserError(f"the fine-tuned run is in {out_dir}, but exporting it failed: {exc}") from None
        report["bundle"] = {"dir": str(result.bundle_dir.resolve()),
                            "worst_psnr_db": result.parity["worst_psnr_db"]}
        run_folder.write_json_atomic(out_dir / FINETUNE_REPORT, report)
    return FinetuneResult(out_dir, report, bundle_dir)


def _summary(report: dict[str, Any]) -> str:
    parts = []
    for name, after in report["evaluation"]["after"].items():
        before = report["evaluation"]["before"].get(name, {})
        if "kid" in after and "kid" in before:
            parts.append(f"{name}: KID {before['kid']['value']:.4f} -> {after['kid']['value']:.4f}")
    return "; ".join(parts) or "no class had enough captures to measure"


def _sample_grid(generator, cfg: TrainConfig, classes: list[str]) -> np.ndarray:
    """One row of 8 designs per capture class (conditional) or 2 rows (unconditional), fixed latents."""
    rows = []
    if cfg.conditional:
        for name in classes:
            rows.append(_designs(generator, cfg, (cfg.class_names or []).index(name), 8))
    else:
        rows.append(_designs(generator, cfg, None, 16))
    images = np.concatenate(rows)
    return run_folder.grid_image(images, cols=8)


def _callback(bar):
    import keras

    class FinetuneCallback(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.diverged: str | None = None

        def on_train_batch_end(self, batch, logs=None):
            logs = logs or {}
            d, g = float(logs.get("d_loss_step", 0.0)), float(logs.get("g_loss_step", 0.0))
            if not (math.isfinite(d) and math.isfinite(g)):
                self.diverged = f"step {batch}: d_loss={d}, g_loss={g}"
                self.model.stop_training = True
                return
            bar.update(1)
            bar.set_postfix_str(f"d {float(logs.get('d_loss', d)):.3f} g {float(logs.get('g_loss', g)):.3f}")

    return FinetuneCallback()

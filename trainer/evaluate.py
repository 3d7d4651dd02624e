"""`evaluate(model, data)`: how close a run's, a bundle's or any image set's designs are to real photos.

One path for everything that is compared: designs are drawn at the model's size (`trainer.eval_sources`), real
photos are decoded and resized to that size by the trainer's own loader (`trainer.eval_photos`), and both go
through the feature networks' internal resize (`trainer.features`). `trainer.evaluator` measures;
`trainer.eval_report` draws the contact sheet and prints the table.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import UserError
from trainer import feature_distances as fd
from trainer.eval_photos import MIN_PHOTOS, RealPhotos, load_real
from trainer.eval_report import contact_sheet, format_table
from trainer.eval_sources import (
    ModelSource,
    kept_epochs,
    make_designs,
    open_model,
    open_run,
    requested_classes,
    snapshot_path,
)
from trainer.evaluator import Evaluator

log = logging.getLogger(__name__)

EVALUATION_FILE = "evaluation.json"
CONTACT_SHEET_FILE = "closest-pairs.png"

__all__ = ["CONTACT_SHEET_FILE", "EVALUATION_FILE", "MIN_PHOTOS", "EvalOptions", "Evaluator", "contact_sheet",
           "evaluate", "format_table", "kept_epochs", "load_real", "make_designs", "open_model", "open_run",
           "requested_classes", "snapshot_path"]


@dataclass
class EvalOptions:
    """What `evaluate` draws and measures."""

    n: int = 1000  # designs generated
    seed: int = 0  # latent seed: the same draw as `atelier generate --seed`
    classes: list[str] | None = None  # classes to compare against (None: the model's classes)
    features_dir: str | Path | None = None  # feature network folder (None: the shipped one)
    features_128_dir: str | Path | None = None  # the 128 px network (None: the shipped one, when installed)
    batch: int | None = None  # bundle batch size to run (None: the largest that is not more than n)
    contact_pairs: int = 16  # design/photo pairs on the contact sheet
    novelty: bool = True  # run the data-copying test and draw the contact sheet


def default_out_dir(model: ModelSource, snapshot: int | None) -> Path:
    """RUN_DIR/evaluation (RUN_DIR/evaluation-epoch-NNNN for a snapshot), or BUNDLE-evaluation beside a bundle."""
    if model.kind == "bundle":
        return model.path.parent / f"{model.path.name}-evaluation"
    return model.path / ("evaluation" if snapshot is None else f"evaluation-epoch-{snapshot:04d}")


def _seen_in_training(train_data_dir: str | None, real: RealPhotos) -> bool | None:
    if real.heldout_from_validation:
        return False
    if not train_data_dir:
        return None
    return Path(train_data_dir).resolve() == Path(real.train_dir).resolve()


@dataclass
class _Designs:
    """What is measured: the pictures, and what the evaluation records about where they came from."""

    images: Any  # uint8 (n, size, size, 3)
    requested: list[str] | None  # the class each design was asked for (conditional models)
    classes: list[str] | None  # the real photos' classes to compare with (None: every class of DATA)
    description: dict[str, Any]
    latents: dict[str, Any] | None
    crop: str
    train_data_dir: str | None
    out: Path


def _from_model(model_path: str | Path, options: EvalOptions, out_dir: str | Path | None,
                snapshot: int | None) -> _Designs:
    model = open_model(model_path, n=options.n, snapshot=snapshot, batch=options.batch)
    classes = requested_classes(model, options.classes)
    out = Path(out_dir) if out_dir is not None else default_out_dir(model, snapshot)
    _check_out(out)
    log.info("generating %d designs (seed %d) from %s", options.n, options.seed, model.path)
    designs, requested = make_designs(model, options.n, options.seed, classes)
    latents = {"n": options.n, "seed": options.seed, "distribution": model.z_distribution,
               "classes": classes if requested is not None else None}
    return _Designs(designs, requested, classes, model.description, latents, model.crop, model.train_data_dir, out)


def _from_images(designs_path: str | Path, options: EvalOptions, out_dir: str | Path | None,
                 size_px: int | None) -> _Designs:
    from trainer.eval_images import load_design_images

    path = Path(designs_path)
    out = Path(out_dir) if out_dir is not None else path.parent / f"{path.stem if path.is_file() else path.name}" \
        "-evaluation"
    _check_out(out)
    images, description = load_design_images(path, size_px, min_images=MIN_PHOTOS)
    return _Designs(images, None, options.classes, description, None, "center", None, out)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for evaluation.json and {CONTACT_SHEET_FILE}")


def evaluate(model_path: str | Path | None, data_dir: str | Path, options: EvalOptions | None = None, *,
             out_dir: str | Path | None = None, snapshot: int | str | None = None,
             designs_path: str | Path | None = None, size_px: int | None = None) -> dict[str, Any]:
    """Evaluate a run folder, a bundle or a set of images against the real photos in `data_dir`.

    Args:
        model_path: a run folder (config.json) or a bundle folder (manifest.json); None with `designs_path`.
        data_dir: a dataset root with train/ and validation/, or class folders (see `trainer.eval_photos`).
        options: sample size, seed, classes, feature networks.
        out_dir: where evaluation.json and closest-pairs.png go (default: see `default_out_dir`; for images,
            NAME-evaluation beside them).
        snapshot: evaluate the kept epoch's generator of a run instead of generator.keras.
        designs_path: score these images (a folder or a .npz) instead of a model's designs.
        size_px: with `designs_path`, the side to evaluate at (default: the images' most common side).

    Returns:
        The evaluation (also written as evaluation.json), with "files" naming what was written.
    """
    from trainer import run_folder
    from trainer.features import DEFAULT_DIR_128, feature_dir, load_feature_net

    options = options or EvalOptions()
    if (model_path is None) == (designs_path is None):
        raise UserError("give either a model (a run folder or a bundle) or --designs DIR|NPZ, not both")
    if options.n < MIN_PHOTOS:
        raise UserError(f"--n must be at least {MIN_PHOTOS} (precision/recall use {fd.K_NEAREST} neighbours), "
                        f"got {options.n}")
    if options.seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {options.seed}")
    if snapshot is not None:
        if designs_path is not None:
            raise UserError("--snapshot picks a kept epoch of a run folder; it does not apply to --designs")
        try:
            snapshot = int(snapshot)
        except ValueError as exc:
            raise UserError(f"--snapshot takes an epoch number, got {snapshot!r}") from exc
    t0 = time.perf_counter()
    features = load_feature_net(options.features_dir)
    dir_128 = Path(options.features_128_dir) if options.features_128_dir else DEFAULT_DIR_128
    features_128 = load_feature_net(dir_128) if options.features_128_dir or dir_128.is_dir() else None
    if features_128 is None:
        log.warning("no 128 px feature network in %s: the two-sample test and diversity use the 64 px one", dir_128)
    if designs_path is not None:
        made = _from_images(designs_path, options, out_dir, size_px)
    else:
        made = _from_model(model_path, options, out_dir, snapshot)
    size = int(made.images.shape[1])
    real = load_real(data_dir, size, made.classes, made.crop)
    seen = _seen_in_training(made.train_data_dir, real)
    if seen:
        log.warning("the held-out photos are a split of %s, the folder the model was trained on: it has seen "
                    "them, so the data-copying test cannot separate copying from fitting (use a dataset with a "
                    "validation/ folder)", real.train_dir)
    log.info("measuring against %d training and %d held-out photos", len(real.train), len(real.heldout))
    evaluator = Evaluator(features, real, seed=options.seed, features_128=features_128)
    measured = evaluator.measure(made.images, made.requested, novelty=options.novelty,
                                 contact_pairs=options.contact_pairs)

    def net_record(net: Any, folder: Path) -> dict[str, Any]:
        return {"dir": str(folder), "sha256": net.card.get("sha256"), "val_accuracy": net.card.get("val_accuracy"),
                "feature_dim": net.feature_dim, "size_px": net.card.get("size_px", 64)}

    result: dict[str, Any] = {
        "model": made.description,
        "data": {"dir": str(data_dir), "train_dir": real.train_dir, "classes": real.class_names,
                 "n_train": len(real.train), "n_heldout": len(real.heldout), "heldout": real.split,
                 "heldout_seen_in_training": seen, "size_px": size, "crop": made.crop},
        "features": net_record(features, Path(options.features_dir or feature_dir())),
        "features_128": net_record(features_128, dir_128) if features_128 is not None else None,
        "latents": made.latents,
        **measured,
    }
    made.out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(made.out / EVALUATION_FILE)}
    if measured["novelty"] is not None:
        sheet = contact_sheet(made.images, real.train, measured["novelty"]["closest"])
        run_folder.write_png(made.out / CONTACT_SHEET_FILE, sheet)
        files["contact_sheet"] = str(made.out / CONTACT_SHEET_FILE)
    result["files"] = files
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    run_folder.write_json_atomic(made.out / EVALUATION_FILE, result)
    return result

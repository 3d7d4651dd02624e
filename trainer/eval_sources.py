"""What `atelier evaluate` measures: a run folder (Keras generator), a bundle (TFLite) or a set of images, behind one
interface (`ModelSource`), and the designs drawn from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.designs import sample_prior
from edge.errors import UserError


@dataclass
class ModelSource:
    """A generator to evaluate; `generate(z, class_ids)` returns uint8 (n, size, size, 3) designs."""

    kind: str  # "run" or "bundle"
    path: Path
    description: dict[str, Any]  # recorded in evaluation.json
    size_px: int
    z_dim: int
    z_distribution: str
    model_classes: list[str] | None  # the classes a conditional model takes; None when unconditional
    trained_classes: list[str] | None  # the classes it was trained on (from its config)
    crop: str  # how its training photos were squared
    train_data_dir: str | None  # the folder it was trained on, when recorded
    generate: Callable[[np.ndarray, np.ndarray | None], np.ndarray]


def snapshot_path(epoch: int) -> str:
    """A kept epoch's generator, relative to the run folder."""
    return f"snapshots/epoch-{epoch:04d}/generator.keras"


def kept_epochs(run_dir: str | Path) -> list[int]:
    """Epochs with a snapshot in `run_dir/snapshots/`, ascending."""
    folder = Path(run_dir) / "snapshots"
    epochs = []
    for p in folder.glob("epoch-*/generator.keras") if folder.is_dir() else []:
        try:
            epochs.append(int(p.parent.name.split("-", 1)[1]))
        except ValueError:
            continue
    return sorted(epochs)


def _keras_generate(generator) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
    from tqdm import tqdm

    from trainer.run_folder import to_uint8

    def generate(z: np.ndarray, onehot: np.ndarray | None) -> np.ndarray:
        chunks = []
        for start in tqdm(range(0, len(z), 256), desc="designs", unit="batch", leave=False,
                          disable=len(z) <= 256):
            feeds = [z[start:start + 256]] if onehot is None else [z[start:start + 256], onehot[start:start + 256]]
            chunks.append(to_uint8(generator(feeds, training=False)))
        return np.concatenate(chunks)

    return generate


def open_run(run_dir: Path, snapshot: int | None = None) -> ModelSource:
    """A run folder's generator (generator.keras, or the snapshot of a kept epoch)."""
    from trainer import run_folder

    config = run_folder.read_config(run_dir)
    rel = None
    if snapshot is not None:
        rel = snapshot_path(snapshot)
        if not (run_dir / rel).is_file():
            kept = kept_epochs(run_dir)
            raise UserError(f"{run_dir} has no snapshot of epoch {snapshot}; kept epochs: "
                            f"{', '.join(map(str, kept)) or 'none'} (train with --keep-epochs to keep more)")
    generator = run_folder.load_generator(run_dir, rel)
    summary = run_folder.read_summary(run_dir) if (run_dir / run_folder.SUMMARY).is_file() else {}
    conditional = bool(config.get("conditional"))
    classes = list(config.get("class_names") or []) or None
    try:
        size_px, z_dim, z_dist = int(config["size_px"]), int(config["z_dim"]), str(config["z_distribution"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{run_dir}/config.json lacks size_px, z_dim or z_distribution ({exc})") from exc
    return ModelSource(
        kind="run", path=run_dir,
        description={"kind": "run", "path": str(run_dir), "generator": rel or run_folder.GENERATOR,
                     "epoch": snapshot if snapshot is not None else summary.get("epochs_done"),
                     "preset": config.get("preset"), "conditional": conditional},
        size_px=size_px, z_dim=z_dim, z_distribution=z_dist,
        model_classes=classes if conditional else None, trained_classes=classes,
        crop=str(config.get("crop", "center")), train_data_dir=config.get("data_dir") or None,
        generate=_keras_generate(generator),
    )


def open_bundle(bundle_dir: Path, n: int, batch: int | None = None) -> ModelSource:
    """A bundle's TFLite generator, run by the kiosk's own `DesignGenerator`."""
    from edge.bundle import load_bundle
    from edge.designs import DesignGenerator

    bundle = load_bundle(bundle_dir)
    if batch is None:
        batch = max((b for b in bundle.batches if b <= n), default=bundle.batches[0])
    gen = DesignGenerator(bundle, batch=batch)
    training = bundle.manifest.get("training") or {}
    config = training.get("config") if isinstance(training, dict) else None
    config = config if isinstance(config, dict) else {}

    def generate(z: np.ndarray, onehot: np.ndarray | None) -> np.ndarray:
        class_ids = None if onehot is None else onehot.argmax(axis=1)
        return gen.generate(z, class_ids)

    trained = list(config.get("class_names") or []) or None
    return ModelSource(
        kind="bundle", path=bundle_dir,
        description={"kind": "bundle", "path": str(bundle_dir), "model_id": bundle.model_id, "name": bundle.name,
                     "quantization": bundle.quantization, "batch": batch, "backend": gen.backend,
                     "preset": bundle.preset, "conditional": bundle.conditional},
        size_px=bundle.size_px, z_dim=bundle.z_dim, z_distribution=bundle.z_distribution,
        model_classes=list(bundle.class_names) if bundle.class_names else None,
        trained_classes=list(bundle.class_names) if bundle.class_names else trained,
        crop=str(config.get("crop", "center")), train_data_dir=config.get("data_dir") or None,
        generate=generate,
    )


def open_model(path: str | Path, *, n: int = 1, snapshot: int | None = None, batch: int | None = None) -> ModelSource:
    """A run folder (it has config.json) or a bundle (it has manifest.json)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a folder: give a run folder (made by `atelier train`) or a bundle "
                        "(made by `atelier export`)")
    if (path / "manifest.json").is_file():
        if snapshot is not None:
            raise UserError("--snapshot picks a kept epoch of a run folder; a bundle has one generator")
        return open_bundle(path, n, batch)
    if (path / "config.json").is_file():
        return open_run(path, snapshot)
    raise UserError(f"{path} has neither config.json (a run folder) nor manifest.json (a bundle)")



def requested_classes(model: ModelSource, classes: list[str] | None) -> list[str]:
    """The classes to compare against: `classes`, else a conditional model's classes, else those it trained on."""
    if classes:
        if model.model_classes is not None:
            unknown = [c for c in classes if c not in model.model_classes]
            if unknown:
                raise UserError(f"--classes {', '.join(unknown)}: the model draws only "
                                f"{', '.join(model.model_classes)}")
        return list(classes)
    if model.model_classes:
        return list(model.model_classes)
    if model.trained_classes:
        return list(model.trained_classes)
    raise UserError(f"{model.path} does not record the classes it was trained on: pass --classes")



def make_designs(model: ModelSource, n: int, seed: int, classes: list[str]) -> tuple[np.ndarray, list[str] | None]:
    """n designs from fixed latents; a conditional model goes round `classes`. Returns (designs, requested)."""
    # The kiosk's own prior draw: a run and its bundle evaluated with one seed make the same designs, so their
    # difference is the export's quality loss alone.
    z = sample_prior(n, model.z_dim, model.z_distribution, seed)
    if model.model_classes is None:
        return model.generate(z, None), None
    requested = [classes[i % len(classes)] for i in range(n)]
    ids = np.array([model.model_classes.index(c) for c in requested])
    onehot = np.eye(len(model.model_classes), dtype=np.float32)[ids]
    return model.generate(z, onehot), requested



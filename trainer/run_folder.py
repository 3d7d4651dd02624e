"""The run folder: one run, one folder, everything inside it (config, data report, metrics, samples, checkpoints).

Layout:
    config.json          resolved TrainConfig
    data_report.json     what the data scan used, skipped and converted
    metrics.jsonl        one line per epoch: losses, img/s, wall time
    summary.json         totals for the run so far (steps, images seen, img/s, data, command)
    samples/epoch-NNNN.png   sample grid from fixed latents (the exported generator, inference mode)
    loss_curve.png       D and G loss against epochs
    tensorboard/         TensorBoard logs (losses, sample grids)
    checkpoints/         crash-safe training state (trainer.checkpoints)
    generator.keras      the generator to export (the EMA generator when EMA is on)
    snapshots/epoch-NNNN/generator.keras   kept epochs, for the epoch table
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import UserError

CONFIG = "config.json"
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
DATA_REPORT = "data_report.json"
GENERATOR = "generator.keras"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file, fsync it, then rename: a kill leaves the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        fh.write(json.dumps(data, indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def check_run_files(run_dir: str | Path) -> None:
    """Refuse a run folder where something other than a regular file sits at a path the run writes.

    Raises:
        UserError: e.g. a folder named summary.json or checkpoints/ckpt-000000004.npz (the run could not save).
    """
    run_dir = Path(run_dir)
    paths = [run_dir / name for name in (CONFIG, SUMMARY, METRICS, DATA_REPORT, GENERATOR, "loss_curve.png")]
    ckpt_dir = run_dir / "checkpoints"
    if ckpt_dir.exists() and not ckpt_dir.is_dir():
        raise UserError(f"{ckpt_dir} should be the run's checkpoint folder but is a file: move it away")
    if ckpt_dir.is_dir():
        paths += [p for p in ckpt_dir.iterdir() if p.name.startswith("ckpt-") and p.name.endswith(".npz")]
    for path in paths:
        if path.exists() and not path.is_file():
            raise UserError(f"{path} is not a regular file (a folder?), but the run keeps a file there: move it "
                            "away and run again")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path} is missing: is {path.parent} a run folder made by `atelier train`?")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:  # damaged bytes, or a file cut short
        raise UserError(f"{path} is not valid JSON, the file is damaged ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} should hold a JSON object, not a {type(data).__name__}: the file is damaged")
    return data


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's resolved config as a dict."""
    return _read_json(Path(run_dir) / CONFIG)


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """The run's summary (steps, images seen, img/s, data, command)."""
    return _read_json(Path(run_dir) / SUMMARY)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every complete line of metrics.jsonl (a line cut short by a kill, or damaged, is ignored)."""
    path = Path(run_dir) / METRICS
    rows = []
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def load_generator(run_dir: str | Path, path: str | Path | None = None):
    """Load the run's exported generator (`generator.keras`, or `path` inside the run folder) as a Keras model."""
    import keras

    import trainer.spectral_norm  # noqa: F401  (registers custom layers for deserialisation)

    file = Path(run_dir) / (path or GENERATOR)
    if not file.is_file():
        raise UserError(f"{file} is missing: train the run first (or it was interrupted before epoch 1 ended)")
    try:
        return keras.saving.load_model(file, compile=False)
    except Exception as exc:  # Keras raises many types for a damaged archive
        raise UserError(f"cannot load {file}: {exc}") from exc


def save_generator_atomic(model, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def grid_image(images: np.ndarray, cols: int, pad: int = 2) -> np.ndarray:
    """Tile (N, H, W, 3) uint8 images into one grid with a white border (the kiosk's C++ `tile`)."""
    from edge.kernels import tile

    return tile(np.ascontiguousarray(images), cols, pad=pad, background=255)


def to_uint8(images) -> np.ndarray:
    """Generator output in [-1, 1] -> uint8 (the kiosk's C++ `postprocess`, so both sides round alike)."""
    from edge.kernels import postprocess

    return postprocess(np.asarray(images, dtype=np.float32))


def write_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(rgb).save(tmp, format="PNG")
    os.replace(tmp, path)


def plot_losses(rows: list[dict[str, Any]], path: Path) -> None:
    """D and G loss against epochs as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    epochs = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(epochs, [r["d_loss"] for r in rows], marker="o", label="D loss")
    ax.plot(epochs, [r["g_loss"] for r in rows], marker="o", label="G loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)

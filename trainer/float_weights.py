"""The float weights a bundle ships for fine-tuning: G, the EMA G, D and the resolved config, no optimizer state.

A bundle holds only int8 (or fp16) TFLite models, which cannot be trained further. `atelier export --float-weights
DIR` writes, beside the bundle, a weights folder that `atelier finetune --from` reads like a run folder:

    DIR/config.json                 the run's resolved config (data_dir emptied: no machine paths)
    DIR/checkpoints/ckpt-<step>.npz generator/, discriminator/, ema_generator/ arrays and the step (compressed)
    DIR/weights.json                what it is: source run, step, sizes, sha256 of the checkpoint, the command

The bundle's manifest names the folder (`training.float_weights`, relative to the bundle), so
`atelier finetune --from models/default` finds `models/default-float` on a fresh clone.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import file_sha256
from edge.errors import UserError
from trainer import checkpoints, run_folder

log = logging.getLogger(__name__)

WEIGHTS_INFO = "weights.json"
_GROUPS = ("generator", "discriminator", "ema_generator")
MAX_BYTES = 25 * 10**6  # what a repository can carry beside the bundle


def check_float_weights_target(run_dir: str | Path, out_dir: str | Path, ckpt: checkpoints.Checkpoint | None = None):
    """Refuse, before anything is written: a run without a readable checkpoint, a checkpoint that is not the state
    the run's generator was saved from, or an `out_dir` that holds something other than float weights.
    Returns the checkpoint (`ckpt`, when one read earlier is given, else the run's newest)."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    ckpt = ckpt or checkpoints.read_latest(run_dir / "checkpoints")
    if ckpt is None:
        raise UserError(f"{run_dir} has no readable checkpoint: the float weights come from the newest one")
    if not ckpt.arrays["generator"] or not ckpt.arrays["discriminator"]:
        raise UserError(f"{ckpt.path} holds no generator or discriminator weights")
    summary = run_folder.read_summary(run_dir) if (run_dir / run_folder.SUMMARY).is_file() else {}
    if summary.get("steps") not in (None, ckpt.step):
        raise UserError(f"{run_dir}'s newest checkpoint is step {ckpt.step}, its generator step "
                        f"{summary['steps']}: resume the run to its end before exporting float weights")
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir())
                                                      and not (out_dir / WEIGHTS_INFO).is_file())):
        raise UserError(f"--float-weights {out_dir} exists and is not a weights folder; choose a new folder")
    return ckpt


def write_float_weights(run_dir: str | Path, out_dir: str | Path, command: list[str] | None = None,
                        max_bytes: int = MAX_BYTES, ckpt: checkpoints.Checkpoint | None = None) -> dict[str, Any]:
    """Write the weights folder of `run_dir`'s newest checkpoint into `out_dir` (replaced if it holds weights).

    Returns what `weights.json` says. Raises UserError as `check_float_weights_target`, or for weights larger than
    `max_bytes` (an existing weights folder is then left as it was).
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    ckpt = check_float_weights_target(run_dir, out_dir, ckpt)
    config = {**run_folder.read_config(run_dir), "data_dir": ""}
    payload: dict[str, np.ndarray] = {"step": np.asarray(ckpt.step, dtype=np.int64)}
    for group in _GROUPS:
        for i, value in enumerate(ckpt.arrays[group]):
            payload[f"{group}/{i:05d}"] = value
    folder = out_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"ckpt-{ckpt.step:09d}.npz"
    tmp = folder / f".{final.name}.tmp"
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **payload)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write the float weights to {folder}: {exc}") from exc
    size = tmp.stat().st_size
    if size > max_bytes:
        tmp.unlink()
        raise UserError(f"the float weights take {size / 1e6:.1f} MB, more than the {max_bytes / 1e6:.0f} MB a "
                        "bundle may carry beside it")
    os.replace(tmp, final)
    for old in checkpoints.list_checkpoints(folder):  # only once the new one is in place
        if old != final:
            old.unlink()
    run_folder.write_json_atomic(out_dir / run_folder.CONFIG, config)
    counts = {g: int(sum(a.size for a in ckpt.arrays[g])) for g in _GROUPS}
    info = {
        "what": "float weights for `atelier finetune --from` (no optimizer state: fine-tuning starts fresh ones)",
        "source_run": run_dir.name,
        "step": ckpt.step,
        "parameters": counts,
        "checkpoint": {"file": f"checkpoints/{final.name}", "bytes": size, "sha256": file_sha256(final)},
        "command": command or [],
    }
    run_folder.write_json_atomic(out_dir / WEIGHTS_INFO, info)
    log.info("float weights of %s (step %d, %.1f MB) -> %s", run_dir, ckpt.step, size / 1e6, out_dir)
    return info


def verify_float_weights(folder: str | Path) -> dict[str, Any]:
    """Check a weights folder against its `weights.json` (present, readable, same sha256). Returns the info."""
    folder = Path(folder)
    info_path = folder / WEIGHTS_INFO
    try:
        info = json.loads(info_path.read_text())
        ckpt = folder / info["checkpoint"]["file"]
        expected = info["checkpoint"]["sha256"]
    except FileNotFoundError:
        raise UserError(f"{folder} holds no float weights ({WEIGHTS_INFO} is missing)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{info_path} is damaged ({exc}); export the float weights again") from None
    if not ckpt.is_file():
        raise UserError(f"{ckpt} is missing: the float weights are incomplete")
    if file_sha256(ckpt) != expected:
        raise UserError(f"{ckpt} is damaged (its sha256 differs from {WEIGHTS_INFO}); export the float weights "
                        "again")
    return info


def resolve_finetune_source(path: str | Path) -> Path:
    """The run-like folder `atelier finetune --from PATH` trains from: PATH itself (a run or weights folder), or,
    for a bundle (manifest.json), the weights folder its manifest names — checked against its sha256."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not path.is_dir():
        raise UserError(f"--from {path}: no such folder")
    if not manifest_path.is_file():
        if (path / WEIGHTS_INFO).is_file():
            verify_float_weights(path)
        return path
    try:
        manifest = json.loads(manifest_path.read_text())
        training = manifest.get("training") or {}
        relative, expected = training.get("float_weights"), training.get("float_weights_sha256")
    except (OSError, ValueError, AttributeError) as exc:
        raise UserError(f"{manifest_path} is damaged ({exc})") from None
    if not relative:
        raise UserError(f"{path} is a model bundle without float weights, which fine-tuning needs: pass the run "
                        "folder it was exported from, or export it again with --float-weights")
    if not isinstance(relative, str) or not isinstance(expected, str):
        raise UserError(f"{manifest_path} is damaged (training.float_weights must name a folder and its sha256)")
    folder = (path / relative).resolve()
    if not folder.is_dir():
        raise UserError(f"the float weights folder {relative!r} that {manifest_path} names is not at {folder}: "
                        "copy it beside the bundle")
    info = verify_float_weights(folder)
    if info["checkpoint"]["sha256"] != expected:
        raise UserError(f"the float weights in {folder} are not the ones {path} was exported with (another run's?); "
                        "export the bundle again with --float-weights")
    log.info("fine-tuning bundle %s from its float weights in %s", path, folder)
    return folder


def attach_float_weights(run_dir: str | Path, bundle_dir: str | Path, out_dir: str | Path,
                         command: list[str] | None = None,
                         ckpt: checkpoints.Checkpoint | None = None) -> dict[str, Any]:
    """Write the float weights of `run_dir` to `out_dir` and name them (relative path, step, sha256) in the
    manifest of `bundle_dir`, which must have been exported from that run. `ckpt`: the run's newest checkpoint
    when `check_float_weights_target` has read it already."""
    from edge.bundle import BundleError, load_bundle
    from trainer.manifest_records import rewrite_manifest
    from trainer.portable_paths import portable_if_absolute

    bundle_dir, out_dir = Path(bundle_dir), Path(out_dir)
    try:
        bundle = load_bundle(bundle_dir)
    except BundleError as exc:
        raise UserError(f"--float-weights: {exc}") from exc
    info = write_float_weights(run_dir, out_dir, [portable_if_absolute(str(c)) for c in command or []], ckpt=ckpt)
    manifest = dict(bundle.manifest)
    training = dict(manifest.get("training") or {})
    training["float_weights"] = os.path.relpath(out_dir.resolve(), bundle_dir.resolve())
    training["float_weights_sha256"] = info["checkpoint"]["sha256"]
    manifest["training"] = training
    rewrite_manifest(bundle_dir, manifest, "--float-weights")
    return info

"""Crash-safe checkpoints: one `.npz` file per checkpoint, written to a temp name, fsynced, then renamed.

A run killed at any moment leaves either a complete `ckpt-<step>.npz` or a `*.tmp` that is never picked (and is
removed on the next save). Loading walks back from the newest file until one reads completely.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_NAME = re.compile(r"^ckpt-(\d{9})\.npz$")
_GROUPS = ("generator", "discriminator", "ema_generator", "g_optimizer", "d_optimizer")


class NonFiniteStateError(ValueError):
    """The training state holds NaN or Inf, so it is not checkpointed."""


@dataclass
class Checkpoint:
    step: int
    arrays: dict[str, list[np.ndarray]]  # group name -> variable values in model order
    path: Path


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _variables(gan, group: str) -> list:
    obj = getattr(gan, group)
    if obj is None:
        return []
    return list(obj.variables if group.endswith("optimizer") else obj.weights)


def all_variables(gan) -> list:
    """Every variable a checkpoint holds, the step counter last."""
    return [v for group in _GROUPS for v in _variables(gan, group)] + [gan.global_step]


def save_checkpoint(gan, folder: Path, keep: int) -> Path:
    """Write the GAN's full training state (weights, EMA, both optimizers, step); keep the newest `keep` files."""
    folder.mkdir(parents=True, exist_ok=True)
    step = int(gan.global_step.numpy())
    payload: dict[str, np.ndarray] = {"step": np.asarray(step, dtype=np.int64)}
    for group in _GROUPS:
        for i, var in enumerate(_variables(gan, group)):
            value = np.asarray(var.numpy())
            if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
                # A finite loss can still come with an infinite update: never call such a state "good".
                raise NonFiniteStateError(f"step {step}: {group} variable {var.path} holds NaN or Inf; "
                                          f"not writing a checkpoint")
            payload[f"{group}/{i:05d}"] = value
    final = folder / f"ckpt-{step:09d}.npz"
    tmp = folder / f".ckpt-{step:09d}.npz.tmp"
    with open(tmp, "wb") as fh:
        np.savez(fh, **payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    _fsync_dir(folder)
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    for stale in folder.glob(".ckpt-*.tmp"):
        stale.unlink(missing_ok=True)
    return final


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoint files, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name) and p.is_file())


def read_latest(folder: Path) -> Checkpoint | None:
    """The newest checkpoint that reads completely, or None."""
    for path in reversed(list_checkpoints(folder)):
        try:
            with np.load(path) as data:
                arrays: dict[str, list[np.ndarray]] = {g: [] for g in _GROUPS}
                for key in sorted(k for k in data.files if "/" in k):
                    group, _ = key.split("/")
                    arrays[group].append(data[key])
                return Checkpoint(int(data["step"]), arrays, path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            log.warning("checkpoint %s is unreadable (%s); trying an older one", path, exc)
    return None


def restore(gan, ckpt: Checkpoint) -> None:
    """Load a checkpoint into a built GAN whose optimizers are built (see trainer.train)."""
    for group in ("g_optimizer", "d_optimizer"):
        if not ckpt.arrays[group] and _variables(gan, group):
            raise ValueError(f"checkpoint {ckpt.path} holds no optimizer state (weights only, e.g. a bundle's "
                             "float weights): it cannot be resumed; fine-tune from it with `atelier finetune --from`")
    for group in _GROUPS:
        assign_checked(_variables(gan, group), ckpt.arrays[group], group, ckpt.path)
    gan.global_step.assign(ckpt.step)


def assign_checked(variables: list, values: list[np.ndarray], group: str, source: Path) -> None:
    """Assign checkpoint `values` to `variables`, refusing (ValueError) a count or shape that does not match."""
    if len(variables) != len(values):
        raise ValueError(f"checkpoint {source} has {len(values)} {group} variables, the model has "
                         f"{len(variables)}: was the config changed since it was written?")
    for var, value in zip(variables, values, strict=True):
        if tuple(var.shape) != value.shape:
            raise ValueError(f"checkpoint {source}: {group} variable {var.path} has shape {value.shape}, "
                             f"the model expects {tuple(var.shape)}")
        var.assign(value)

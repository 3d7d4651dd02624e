"""Paths as a bundle's manifest records them: nothing of the machine that made it.

A bundle travels (to a kiosk, into the repository, to another shop), so its manifest never holds an absolute path.
A path inside the repository checkout is recorded relative to the repository root (`runs/default-tshirt`). A path
outside it (a dataset folder elsewhere) is recorded as its last two folder names and a content hash of the files
under it when it is there (`.../clothing-small/train (content sha256 1f2e3d4c5b6a7980)`): enough to tell which data
it was and whether a folder at hand is the same, without the machine's layout. The hash covers every file's path
relative to the folder and its bytes, so renaming the folder keeps it and changing a photo does not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = ".../"  # ASCII: manifests are written with ensure_ascii


def folder_content_sha256(folder: Path) -> str:
    """sha256 over (relative path, sha256 of the bytes) of every file under `folder`, in path order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def portable_path(path: str | Path, repo_root: Path = REPO_ROOT) -> str:
    """`path` relative to the repository root when inside it; else its last two names and a content hash."""
    text = str(path)
    if not text or text.startswith(OUTSIDE):
        return text  # nothing, or already portable
    resolved = Path(path).resolve()
    if resolved == repo_root or repo_root in resolved.parents:
        return resolved.relative_to(repo_root).as_posix() or "."
    name = "/".join(resolved.parts[-2:])
    if resolved.is_dir():
        return f"{OUTSIDE}{name} (content sha256 {folder_content_sha256(resolved)[:16]})"
    if resolved.is_file():  # e.g. a capture store's .tar export
        return f"{OUTSIDE}{name} (content sha256 {hashlib.sha256(resolved.read_bytes()).hexdigest()[:16]})"
    return f"{OUTSIDE}{name}"  # no longer there: its name only


def portable_if_absolute(text: str) -> str:
    """An absolute path (or one that starts a description, `PATH (what it is)`) made portable; else as given.

    A relative path is what the user typed, relative to where they stood: it names nothing of the machine.
    """
    head, sep, tail = text.partition(" (")
    return portable_path(head) + sep + tail if Path(head).is_absolute() else text


def portable_training(run_dir: Path, config: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """The manifest's `training` section: the run folder, its config and summary with every path made portable."""
    seen: dict[str, str] = {}  # the data folder appears twice: hash it once

    def portable(value: str) -> str:
        if value not in seen:
            seen[value] = portable_path(value)
        return seen[value]

    config = dict(config)
    if config.get("data_dir"):
        config["data_dir"] = portable(config["data_dir"])
    keys = ("steps", "epochs_done", "images_seen", "img_per_s", "wall_s", "data", "command")
    summary = {k: summary.get(k) for k in keys}
    if isinstance(summary["data"], dict) and summary["data"].get("dir"):
        summary["data"] = {**summary["data"], "dir": portable(summary["data"]["dir"])}
    return {"run_dir": portable_path(run_dir), "config": config, "summary": summary}

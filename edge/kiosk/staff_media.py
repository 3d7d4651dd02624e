"""What staff bring on a USB stick, and the bundles already on the kiosk: found by looking, never typed in.

- The staff key: a file named `atelier-staff.key` at the top of a mounted stick (or one folder down) whose
  sha256 is the config's `staff_key_sha256`. Make one with
  `head -c 32 /dev/urandom | base64 > /media/<stick>/atelier-staff.key` and put `sha256sum` of it in the config.
- Bundles: folders holding a `manifest.json` (in `models_dir`, or on a stick up to two folders down) and `.tar` /
  `.tar.gz` / `.tgz` archives on a stick. The staff panel lists them; staff pick one instead of browsing files.

A bundle is named to the page by an opaque ID (its index in the latest listing plus a hash of its path), so a path
never comes from the client.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from edge.bundle import MANIFEST

log = logging.getLogger(__name__)

KEY_NAME = "atelier-staff.key"
MAX_KEY_BYTES = 4096
_ARCHIVES = (".tar", ".tar.gz", ".tgz")
_MAX_FOUND = 50


def roots_of(usb_roots: str) -> list[Path]:
    """The config's comma-separated mount roots as paths (empty entries dropped)."""
    return [Path(p.strip()) for p in usb_roots.split(",") if p.strip()]


def _mounts(roots: list[Path]) -> list[Path]:
    """Folders a stick may be mounted at: each root, its children and grandchildren (/media/<user>/<label>)."""
    found: list[Path] = []
    for root in roots:
        found.append(root)
        for child in _dirs(root):
            found.append(child)
            found.extend(_dirs(child))
    return found


def _dirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:  # not mounted, no permission: nothing there
        return []


def find_staff_key(roots: list[Path], sha256: str) -> Path | None:
    """The staff key file on a mounted stick, if one is plugged in and matches `sha256` (else None)."""
    if not sha256:
        return None
    for folder in _mounts(roots):
        path = folder / KEY_NAME
        try:
            if not path.is_file() or path.stat().st_size > MAX_KEY_BYTES:
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            continue
        if hmac.compare_digest(digest, sha256):
            return path
        log.warning("event=staff_key_mismatch path=%s (its sha256 is not the config's staff_key_sha256)", path)
    return None


@dataclass(frozen=True)
class FoundBundle:
    """A bundle staff can install: a folder (with a manifest) or an archive, on the kiosk or on a stick."""

    path: Path
    where: str  # "kiosk" (models_dir) or "usb"
    kind: str  # "folder" or "archive"
    name: str  # the manifest's name (folders), else the file name

    @property
    def id(self) -> str:
        """An opaque handle for the page (a hash of the path)."""
        return hashlib.sha256(str(self.path).encode()).hexdigest()[:16]

    def to_json(self, active: Path | None) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "where": self.where, "kind": self.kind, "file": self.path.name,
                "active": active is not None and self.path.resolve() == active}


def _manifest_name(folder: Path) -> str | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return str(manifest.get("name") or folder.name) if isinstance(manifest, dict) else None
    except (OSError, ValueError):
        return None


def list_bundles(models_dir: Path | None, roots: list[Path]) -> list[FoundBundle]:
    """Bundles in `models_dir` (folders) and on mounted sticks (folders and archives), at most 50."""
    found: list[FoundBundle] = []
    if models_dir is not None:
        for folder in _dirs(models_dir):
            name = _manifest_name(folder)
            if name is not None:
                found.append(FoundBundle(folder, "kiosk", "folder", name))
    for mount in _mounts(roots):
        try:
            entries = sorted(mount.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir() and (entry / MANIFEST).is_file():
                name = _manifest_name(entry)
                if name is not None:
                    found.append(FoundBundle(entry, "usb", "folder", name))
            elif entry.is_file() and entry.name.lower().endswith(_ARCHIVES):
                found.append(FoundBundle(entry, "usb", "archive", entry.name))
    unique = {b.path.resolve(): b for b in found}  # a root that is also a mount's child is listed once
    return list(unique.values())[:_MAX_FOUND]

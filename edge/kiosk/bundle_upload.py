"""Staff model uploads: a bundle folder sent as a .tar (optionally gzipped), unpacked safely into `models_dir`.

Members must be regular files with plain names (a single top folder is allowed and dropped); nothing else is
written. Their sizes must sum to at most MAX_UNPACKED_BYTES and fit on the disk with UPLOAD_FREE_MARGIN_BYTES to
spare (checked before anything is written; the bytes copied are counted too, so a "tar bomb" stops at the first
cap it passes). The files are staged under a dot name (which the models-folder watcher ignores); the model
manager renames the folder into place (`edge.kiosk.hot_swap.ModelManager.receive_upload`).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import re
import secrets
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from edge.bundle import MANIFEST
from edge.kiosk.bundle_checks import ModelRejected

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # the upload as sent (a .tar, or a .tar.gz)
# Unpacked: the sum of the member sizes a .tar.gz may expand to (bundle models barely compress, so a real bundle
# unpacks to about its upload size; a "tar bomb" of zeros is refused before anything is written).
MAX_UNPACKED_BYTES = 2 * MAX_UPLOAD_BYTES
MAX_UPLOAD_MEMBERS = 64  # a bundle is a manifest and a few model files
# Free space kept on the models folder's disk beyond the unpacked upload (logs, captures, the state file).
UPLOAD_FREE_MARGIN_BYTES = 32 * 1024 * 1024
MAX_MANIFEST_BYTES = 1024 * 1024
_COPY_CHUNK = 1024 * 1024
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class StagedUpload:
    """An unpacked upload waiting to be renamed into place."""

    staging: Path  # the unpacked files, under a dot name the watcher ignores
    final: Path  # the folder name it gets in models_dir when complete
    files: int

    def discard(self) -> None:
        """Remove the staged files (the upload is abandoned)."""
        shutil.rmtree(self.staging, ignore_errors=True)


def stage_upload(data: bytes, models_dir: Path) -> StagedUpload:
    """Unpack an uploaded bundle archive into a staging folder of `models_dir` (see the module docstring).

    Raises:
        ModelRejected: the upload is not a safe bundle archive, or it does not fit on the disk.
    """
    if len(data) > MAX_UPLOAD_BYTES:
        raise ModelRejected(f"the upload is over {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
        members = _list_members(tar)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ModelRejected(f"the upload is not a readable .tar of a bundle folder ({exc})") from None
    files = _bundle_files(members)
    name = _manifest_name(tar, files[MANIFEST])
    needed = sum(m.size for m in files.values())
    free = _free_bytes(models_dir)
    if needed + UPLOAD_FREE_MARGIN_BYTES > free:
        raise ModelRejected(f"not enough free space for the upload in {models_dir}: it unpacks to "
                            f"{needed / 2**20:.1f} MB, {free / 2**20:.0f} MB are free and "
                            f"{UPLOAD_FREE_MARGIN_BYTES // 2**20} MB must stay free; remove old bundle folders")
    stem = re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:60].strip(".-") or "bundle"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    staged = StagedUpload(models_dir / f".upload-{secrets.token_hex(6)}",
                          models_dir / f"{stem}-{stamp}-{secrets.token_hex(2)}", len(files))
    staged.staging.mkdir(parents=True)
    try:
        budget = MAX_UNPACKED_BYTES
        for fname, member in files.items():
            with open(staged.staging / fname, "wb") as out:
                budget -= _copy_member(tar, member, out, budget)
                out.flush()
                os.fsync(out.fileno())
    except BaseException:
        staged.discard()
        raise
    return staged


def _bundle_files(members: list[tarfile.TarInfo]) -> dict[str, tarfile.TarInfo]:
    """File name -> member for an upload's members; refuses anything but plain files of one bundle folder."""
    files: dict[str, tarfile.TarInfo] = {}
    for m in members:
        parts = [p for p in m.name.split("/") if p not in ("", ".")]
        if m.name.startswith("/") or ".." in parts or len(parts) > 2:
            raise ModelRejected(f"upload member {m.name!r} has an unsafe path")
        if m.isdir():
            continue
        if not m.isfile() or not _SAFE_NAME.match(parts[-1]):
            raise ModelRejected(f"upload member {m.name!r} is not a plain file of a bundle")
        if parts[-1] in files:
            raise ModelRejected(f"upload has {parts[-1]!r} twice")
        files[parts[-1]] = m
    if MANIFEST not in files:
        raise ModelRejected(f"the upload has no {MANIFEST}: tar a bundle folder made by `atelier export`")
    if files[MANIFEST].size > MAX_MANIFEST_BYTES:
        raise ModelRejected(f"the upload's {MANIFEST} is over {MAX_MANIFEST_BYTES // 1024} KB")
    return files


def _manifest_name(tar: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    """The bundle name the upload's manifest gives (it names the folder)."""
    try:
        manifest = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
        return str(manifest.get("name", "bundle"))
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise ModelRejected(f"the upload's {MANIFEST} is truncated or damaged ({exc})") from None
    except (ValueError, AttributeError, OSError) as exc:
        raise ModelRejected(f"the upload's {MANIFEST} is not valid JSON ({exc})") from None


def _list_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The members of an upload, read one header at a time so that a bomb stops at the first cap it passes."""
    members: list[tarfile.TarInfo] = []
    total = 0
    while (member := tar.next()) is not None:
        members.append(member)
        total += max(member.size, 0)
        if len(members) > MAX_UPLOAD_MEMBERS:
            raise ModelRejected(f"the upload has over {MAX_UPLOAD_MEMBERS} members; a bundle folder holds "
                                f"{MANIFEST} and a few model files")
        if total > MAX_UNPACKED_BYTES:
            raise ModelRejected(f"the upload unpacks to over {MAX_UNPACKED_BYTES // 2**20} MB; a bundle is far "
                                "smaller (is it the right file?)")
    return members


def _copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, out: io.BufferedWriter, budget: int) -> int:
    """Copy one upload member to `out`, counting the bytes; returns how many were copied.

    Raises:
        ModelRejected: the member is truncated or damaged, or it holds more than it declared or than `budget`.
    """
    src = tar.extractfile(member)
    if src is None:
        raise ModelRejected(f"cannot read upload member {member.name!r}")
    copied = 0
    while True:
        try:
            chunk = src.read(_COPY_CHUNK)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise ModelRejected(f"upload member {member.name!r} is truncated or damaged ({exc})") from None
        if not chunk:
            break
        copied += len(chunk)
        if copied > member.size or copied > budget:
            raise ModelRejected(f"upload member {member.name!r} holds more than it declared; refusing the upload")
        out.write(chunk)
    if copied != member.size:
        raise ModelRejected(f"upload member {member.name!r} is truncated ({copied} of {member.size} bytes)")
    return copied


def _free_bytes(folder: Path) -> int:
    """Bytes free to this user on the disk that holds `folder` (or its nearest existing parent)."""
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize

"""Moving captures between machines: a store exported to one tar file, and a tar imported into a store.

The tar (uncompressed: the JPEGs are compressed already) holds, in this order::

    manifest.json    {"format": "atelier-captures", "format_version": 1, "created_utc": ..., "captures": [rows]}
    SHA256SUMS       "<sha256>  images/<file>" per capture (sha256sum -c can check an extracted copy)
    images/<id>.jpg  the captures

Importing never trusts the tar: members must be regular files with exactly these names (no absolute paths,
no `..`, no links or devices, nothing else), sizes are bounded, every image must match both its manifest row
and SHA256SUMS, and each capture is written through the store's own crash-safe path (`CaptureStore.add_jpeg`).
Captures already in the store (same sha256) are skipped, so importing twice changes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from edge.capture.store import (
    CAPTURE_ID,
    CaptureRecord,
    CaptureStore,
    FrameQuality,
    StoreError,
    fsync_dir,
    validate_class_name,
)
from edge.errors import UserError

log = logging.getLogger(__name__)

ARCHIVE_FORMAT = "atelier-captures"
ARCHIVE_VERSION = 1
MANIFEST_JSON = "manifest.json"
SHA256SUMS = "SHA256SUMS"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_IMAGE_BYTES = 50 * 1024 * 1024
_IMAGE_MEMBER = re.compile(r"^images/(\d{8}T\d{9}-[0-9a-f]{8})\.jpg$")


class ArchiveError(UserError):
    """A capture archive that cannot be trusted or read; nothing was imported from it."""


@dataclass
class ImportReport:
    """What `import_archive` did."""

    added: int
    skipped_duplicates: int
    classes: dict[str, int]


def export_archive(store_dir: str | Path, out: str | Path, *, overwrite: bool = False, progress: bool = True
                   ) -> Path:
    """Write every capture of a store into one tar (manifest, checksums, images).

    The store is read without locking (the kiosk may keep capturing: the export holds the captures
    committed when it started). The tar is written to a temp name and renamed when complete.

    Args:
        store_dir: the capture store folder.
        out: the .tar file to write.
        overwrite: replace an existing file.
        progress: show a progress bar.

    Returns:
        The written tar's path.

    Raises:
        UserError: a bad store, an existing output without `overwrite`, or a write failure.
    """
    out = Path(out)
    if out.exists() and (out.is_dir() or not overwrite):
        raise ArchiveError(f"{out} already exists: choose another --out or pass --overwrite")
    if out.suffix != ".tar":
        raise ArchiveError(f"--out {out} should end in .tar")
    with CaptureStore(store_dir, writable=False) as store:
        records = store.records()
        manifest = {
            "format": ARCHIVE_FORMAT,
            "format_version": ARCHIVE_VERSION,
            "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "n_captures": len(records),
            "classes": store.class_counts(),
            "captures": [r.to_json() for r in records],
        }
        sums = "".join(f"{r.sha256}  images/{r.file}\n" for r in records)
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(f".{out.name}.part")
        try:
            with open(part, "wb") as fh:
                with tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    _add_bytes(tar, MANIFEST_JSON, (json.dumps(manifest, indent=1) + "\n").encode())
                    _add_bytes(tar, SHA256SUMS, sums.encode())
                    for r in tqdm(records, desc="export", unit="capture", leave=False, disable=not progress):
                        data = store.image_path(r).read_bytes()
                        if hashlib.sha256(data).hexdigest() != r.sha256:
                            raise ArchiveError(f"capture {r.id} in {store_dir} fails its checksum; run "
                                               "`atelier capture verify` and repair the store first")
                        _add_bytes(tar, f"images/{r.file}", data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(part, out)
            fsync_dir(out.parent)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise ArchiveError(f"cannot write {out}: {exc.strerror or exc}") from None
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    log.info("exported %d captures (%s) to %s", len(records),
             ", ".join(f"{k} {v}" for k, v in manifest["classes"].items()), out)
    return out


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


def _check_member(member: tarfile.TarInfo, tar_path: Path) -> None:
    name = member.name
    if name.startswith("/") or "\\" in name or any(part == ".." for part in name.split("/")):
        raise ArchiveError(f"{tar_path}: member {name!r} has an absolute or parent path; refusing the archive")
    if member.isdir() and name.rstrip("/") == "images":
        return
    if not member.isfile():
        raise ArchiveError(f"{tar_path}: member {name!r} is not a regular file (link or device); refusing it")
    if name not in (MANIFEST_JSON, SHA256SUMS) and not _IMAGE_MEMBER.match(name):
        raise ArchiveError(f"{tar_path}: unexpected member {name!r}; a capture archive holds only "
                           f"{MANIFEST_JSON}, {SHA256SUMS} and images/<capture id>.jpg")
    limit = MAX_MANIFEST_BYTES if name in (MANIFEST_JSON, SHA256SUMS) else MAX_IMAGE_BYTES
    if member.size > limit:
        raise ArchiveError(f"{tar_path}: member {name!r} is {member.size} bytes, over the {limit} limit")


def _open_tar(path: Path) -> tarfile.TarFile:
    if not path.is_file():
        raise ArchiveError(f"capture archive {path} does not exist")
    try:
        return tarfile.open(path, mode="r:*")
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveError(f"{path} is not a readable tar ({exc}); make one with `atelier capture export`") \
            from None


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> bytes:
    fh = tar.extractfile(member)
    if fh is None:
        raise ArchiveError(f"{path}: cannot read member {member.name!r}")
    try:
        data = fh.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"{path}: member {member.name!r} is truncated or damaged ({exc})") from None
    if len(data) != member.size:
        raise ArchiveError(f"{path}: member {member.name!r} is truncated")
    return data


def _parse_manifest(data: bytes, path: Path) -> list[CaptureRecord]:
    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{path}: {MANIFEST_JSON} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ARCHIVE_FORMAT:
        raise ArchiveError(f"{path} is not an atelier capture archive (no format {ARCHIVE_FORMAT!r})")
    version = manifest.get("format_version")
    if version != ARCHIVE_VERSION:
        raise ArchiveError(f"{path} has capture archive format_version {version!r}; this atelier reads "
                           f"{ARCHIVE_VERSION}")
    rows = manifest.get("captures")
    if not isinstance(rows, list):
        raise ArchiveError(f"{path}: {MANIFEST_JSON} has no list of captures")
    records = []
    for i, row in enumerate(rows):
        try:
            record = CaptureRecord.from_json(row)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise ArchiveError(f"{path}: capture #{i} in {MANIFEST_JSON} is malformed ({exc})") from None
        if not CAPTURE_ID.match(str(record.id)) or record.file != f"{record.id}.jpg" \
                or not re.fullmatch(r"[0-9a-f]{64}", str(record.sha256)):
            raise ArchiveError(f"{path}: capture #{i} has a bad id, file name or sha256")
        try:
            validate_class_name(record.class_name)
        except StoreError as exc:
            raise ArchiveError(f"{path}: capture {record.id}: {exc}") from None
        records.append(record)
    return records


def _parse_sums(data: bytes, path: Path) -> dict[str, str]:
    sums = {}
    for line in data.decode("ascii", errors="replace").splitlines():
        m = re.fullmatch(r"([0-9a-f]{64})  (images/\S+)", line.strip())
        if not m:
            raise ArchiveError(f"{path}: {SHA256SUMS} has a malformed line {line[:80]!r}")
        sums[m.group(2)] = m.group(1)
    return sums


def read_archive(path: str | Path) -> Iterator[tuple[CaptureRecord, bytes]]:
    """Check a capture archive and yield (row, JPEG bytes) for every capture, verified against both checksums.

    Every member is checked before the first capture is yielded (a bad archive raises before anything is
    used).

    Raises:
        ArchiveError: naming the first problem.
    """
    path = Path(path)
    with _open_tar(path) as tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ArchiveError(f"{path} is truncated or damaged ({exc})") from None
        by_name: dict[str, tarfile.TarInfo] = {}
        for m in members:
            _check_member(m, path)
            if m.isfile():
                if m.name in by_name:
                    raise ArchiveError(f"{path}: member {m.name!r} appears twice")
                by_name[m.name] = m
        for required in (MANIFEST_JSON, SHA256SUMS):
            if required not in by_name:
                raise ArchiveError(f"{path} has no {required}: it is not a capture archive")
        records = _parse_manifest(_read_member(tar, by_name[MANIFEST_JSON], path), path)
        sums = _parse_sums(_read_member(tar, by_name[SHA256SUMS], path), path)
        images = {n for n in by_name if n.startswith("images/")}
        listed = {f"images/{r.file}" for r in records}
        if images != listed or set(sums) != listed:
            extra = sorted((images | set(sums)) ^ listed)
            raise ArchiveError(f"{path}: the images, {SHA256SUMS} and {MANIFEST_JSON} do not list the same "
                               f"captures (e.g. {extra[0]})")
        for r in records:
            name = f"images/{r.file}"
            if sums[name] != r.sha256:
                raise ArchiveError(f"{path}: {SHA256SUMS} and {MANIFEST_JSON} disagree about {name}")
        for r in records:
            name = f"images/{r.file}"
            data = _read_member(tar, by_name[name], path)
            if hashlib.sha256(data).hexdigest() != r.sha256 or len(data) != r.bytes:
                raise ArchiveError(f"{path}: {name} fails its checksum: the archive is damaged")
            yield r, data


def import_archive(path: str | Path, store_dir: str | Path, *, progress: bool = True, **store_options: Any
                   ) -> ImportReport:
    """Add every capture of an archive to a store (created when missing); duplicates (same sha256) are skipped.

    The whole archive is verified before the first capture is written.

    Args:
        path: the .tar made by `export_archive`.
        store_dir: the store to add to.
        progress: show a progress bar.
        **store_options: passed to CaptureStore (max_bytes, min_free_bytes).

    Returns:
        How many were added and skipped, and the store's classes afterwards.
    """
    path = Path(path)
    for _ in read_archive(path):  # verify everything first: a bad archive imports nothing
        pass
    added = skipped = 0
    with CaptureStore(store_dir, **store_options) as store:
        for record, data in tqdm(read_archive(path), desc="import", unit="capture", leave=False,
                                 disable=not progress):
            if store.find_sha256(record.sha256) is not None:
                skipped += 1
                continue
            quality = FrameQuality(record.sharpness, record.mean_luma, record.dark_fraction, record.bright_fraction,
                                   record.dhash, record.faces_blurred, record.colour)
            cid = record.id if store.get(record.id) is None else None
            store.add_jpeg(data, class_name=record.class_name, quality=quality, width=record.width,
                           height=record.height, source="import", capture_id=cid, time_utc=record.time_utc)
            added += 1
        classes = store.class_counts()
    log.info("imported %d captures from %s into %s (%d already there)", added, path, store_dir, skipped)
    return ImportReport(added, skipped, classes)

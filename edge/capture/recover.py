"""Recovering a capture store whose manifest.sqlite is damaged: keep what can still be trusted, quarantine the rest.

What can be recovered: every row SQLite can still read from the damaged manifest whose image is there with the
size and sha256 the row records (the class, the quality numbers and the capture time come back with it). What
cannot: the class of an image whose row is unreadable (the class lives only in the manifest; such images go to
quarantine/ like any image without a row, and `atelier capture add --class` takes them back), and the manifest's
repair log. The damaged file itself is moved to quarantine/ untouched, never deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from edge.capture.store import (
    _COLUMNS,
    _PLACEHOLDERS,
    _SCHEMA,
    CAPTURE_ID,
    FORMAT_VERSION,
    IMAGES,
    MANIFEST,
    QUARANTINE,
    TMP,
    CaptureRecord,
    StoreError,
    _iso,
    _record,
    _row,
    _utc_now,
    fsync_dir,
    take_writer_lock,
    validate_class_name,
)

log = logging.getLogger(__name__)


@dataclass
class ManifestRecovery:
    """What `recover_manifest` did."""

    detail: str  # why the manifest was damaged
    kept_as: str | None  # the damaged manifest's name under quarantine/ (None: there was none)
    recovered: int  # rows read back whose files match them
    unreadable: bool  # SQLite could not read every row (some rows may be lost)
    mismatched: int  # rows read back whose file is missing or differs (dropped; the files stay for the open)

    def summary(self) -> str:
        kept = f"kept as {QUARANTINE}/{self.kept_as}" if self.kept_as else "there was nothing to keep"
        lines = [f"the manifest was damaged ({self.detail}); {kept}",
                 f"recovered the rows of {self.recovered} captures from it (their files match their checksums)"]
        if self.unreadable:
            lines.append("some of its rows could not be read")
        if self.mismatched:
            lines.append(f"{self.mismatched} rows it still held did not match their files and were dropped")
        return "\n".join(lines)


def _pad_truncated(path: Path) -> None:
    """Extend a truncated database file with zero pages to the size its header records.

    SQLite refuses a file shorter than its header's page count as a whole; padded, only the lost pages fail and
    the rows on the pages before them can be read.
    """
    with path.open("r+b") as f:
        header = f.read(100)
        if len(header) < 100 or not header.startswith(b"SQLite format 3\0"):
            return
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        expected = page_size * int.from_bytes(header[28:32], "big")
        size = f.seek(0, os.SEEK_END)
        if size < expected:
            f.write(b"\0" * (expected - size))


def _salvage(path: Path) -> tuple[list[CaptureRecord], bool]:
    """The capture rows SQLite can still read from a damaged manifest (a scratch copy), and whether any failed."""
    rows: dict[int, tuple] = {}
    unreadable = False
    _pad_truncated(path)
    try:
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.DatabaseError:
        return [], True
    try:
        try:
            for row in db.execute(f"SELECT rowid, {_COLUMNS} FROM captures ORDER BY rowid"):
                rows[row[0]] = row[1:]
        except sqlite3.DatabaseError:
            unreadable = True
            # A damaged page stops the scan; ask for each rowid after the last good one on its own.
            try:
                (top,) = db.execute("SELECT max(rowid) FROM captures").fetchone()
            except sqlite3.DatabaseError:
                top = None
            last = max(rows, default=0)
            for rowid in range(last + 1, int(top or 0) + 1 if top else last + 1 + 10_000):
                try:
                    row = db.execute(f"SELECT {_COLUMNS} FROM captures WHERE rowid = ?", (rowid,)).fetchone()
                except sqlite3.DatabaseError:
                    continue
                if row is not None:
                    rows[rowid] = row
    finally:
        db.close()
    records = []
    for row in rows.values():
        try:
            records.append(_record(row))
        except (TypeError, ValueError):
            unreadable = True
    return records, unreadable


def _matches(root: Path, record: CaptureRecord) -> bool:
    path = root / IMAGES / record.file
    if not CAPTURE_ID.match(record.id) or record.file != f"{record.id}.jpg" or not path.is_file():
        return False
    try:
        validate_class_name(record.class_name)
    except StoreError:
        return False
    return path.stat().st_size == record.bytes and hashlib.sha256(path.read_bytes()).hexdigest() == record.sha256


def recover_manifest(root: str | Path, detail: str) -> ManifestRecovery:
    """Move a damaged manifest to quarantine/ and write a new one holding the rows that can be trusted.

    Images left without a row are not touched here: the next writable open quarantines them (and says so).

    Args:
        root: the store folder.
        detail: why the manifest is damaged (from `ManifestDamaged`), for the report and the repair log.

    Raises:
        StoreError: another process writes the store.
    """
    root = Path(root)
    for sub in (root / QUARANTINE, root / TMP):
        sub.mkdir(exist_ok=True)
    lock = take_writer_lock(root)
    try:
        manifest = root / MANIFEST
        parts = [manifest.with_name(manifest.name + suffix) for suffix in ("-wal", "-shm")]
        records: list[CaptureRecord] = []
        unreadable = False
        if manifest.is_file() and manifest.stat().st_size:
            scratch = root / TMP / "recovering"
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir()
            for path in (manifest, *parts):
                if path.is_file():
                    shutil.copyfile(path, scratch / path.name)
            records, unreadable = _salvage(scratch / MANIFEST)
            shutil.rmtree(scratch, ignore_errors=True)
        kept_as = None
        stamp = _utc_now().strftime("%Y%m%dT%H%M%S")
        for path in (manifest, *parts):
            if path.exists() or path.is_symlink():
                name = f"{stamp}-damaged-{path.name}"
                os.replace(path, root / QUARANTINE / name)
                kept_as = kept_as or name
        fsync_dir(root / QUARANTINE)
        good = [r for r in records if _matches(root, r)]
        db = sqlite3.connect(manifest, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO meta VALUES ('format_version', ?)", (str(FORMAT_VERSION),))
            db.execute("INSERT INTO meta VALUES ('created_utc', ?)", (_iso(_utc_now()),))
            db.executemany(f"INSERT OR IGNORE INTO captures ({_COLUMNS}) VALUES ({_PLACEHOLDERS})",
                           [_row(r) for r in good])
            db.execute("INSERT INTO repairs VALUES (?, ?, ?, ?)",
                       (_iso(_utc_now()), "manifest_recovered", kept_as or MANIFEST,
                        f"{detail}; {len(good)} rows recovered"))
            db.execute("COMMIT")
        finally:
            with contextlib.suppress(sqlite3.Error):
                db.close()
    finally:
        os.close(lock)
    report = ManifestRecovery(detail=detail, kept_as=kept_as, recovered=len(good), unreadable=unreadable,
                              mismatched=len(records) - len(good))
    log.warning("event=capture_store_repair action=manifest_recovered store=%s kept_as=%s recovered=%d reason=%r",
                root, kept_as, len(good), detail)
    return report

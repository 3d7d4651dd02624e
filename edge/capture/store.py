"""The capture store: a folder of JPEGs plus a SQLite manifest — the same format `atelier train --data` reads.

Layout of a store folder::

    manifest.sqlite   the manifest (WAL journal): one row per capture, the store's format version, a repair log
    images/<id>.jpg   one JPEG per row; the name is the capture ID the store made (never anything a user typed)
    quarantine/       files start-up found without a complete row (moved here, never deleted)
    .tmp/             files being written
    .lock             held (flock) by the one process that writes

A capture is written in this order: the JPEG to `.tmp/<id>.jpg.part`, fsync, rename into `images/`, fsync the
folder, then the manifest row in one transaction (synchronous=FULL). A kill -9 at any moment therefore leaves
either nothing, a `.part` file, or a complete image without its row — never a row without its file nor a
truncated image under `images/`. Opening the store for writing repairs what a crash left: `.part` files and
images without a row are moved to `quarantine/`, and a row whose file is missing or has the wrong size is
dropped; every repair is logged and recorded in the `repairs` table.

Disk space is checked before anything is written (`max_bytes` for the whole store and a free-space floor on
the disk), and a write that still fails with ENOSPC, EDQUOT or EFBIG removes its temp file and writes no row:
the capture is refused with `StoreFull` and the store stays as it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import logging
import math
import os
import re
import secrets
import sqlite3
import threading
import unicodedata
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import UserError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.sqlite"
IMAGES = "images"
QUARANTINE = "quarantine"
TMP = ".tmp"
LOCK = ".lock"
DEFAULT_MIN_FREE_BYTES = 100 * 1024 * 1024  # keep this much free on the disk (logs, the OS, the database)
DEFAULT_JPEG_QUALITY = 92
# Room kept for the manifest's own growth (a row, WAL frames) on top of each JPEG when checking space.
MANIFEST_MARGIN_BYTES = 64 * 1024
# Capture IDs the store makes: UTC time to the millisecond, then 8 random hex digits.
CAPTURE_ID = re.compile(r"^\d{8}T\d{9}-[0-9a-f]{8}$")
MAX_CLASS_CHARS = 64
_CLASS_NAME = re.compile(r"^[^\W_](?:[\w .&+'-]*[^\W_])?$")
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_OWN_NAMES = {IMAGES, QUARANTINE, TMP, LOCK}  # what a store being created holds before its manifest

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS captures (
    id TEXT PRIMARY KEY,            -- capture ID, also the file name stem
    time_utc TEXT NOT NULL,         -- ISO 8601, UTC, milliseconds
    class TEXT NOT NULL,            -- garment class (a name; never part of a path)
    file TEXT NOT NULL UNIQUE,      -- file name under images/
    dhash TEXT NOT NULL,            -- 64-bit difference hash, 16 hex digits
    sharpness REAL NOT NULL,        -- variance of the Laplacian of luma (gate's analysis size)
    mean_luma REAL NOT NULL,        -- exposure: mean BT.601 luma 0..255
    dark_fraction REAL NOT NULL,    -- exposure: share of near-black pixels
    bright_fraction REAL NOT NULL,  -- exposure: share of near-white pixels
    width INTEGER NOT NULL,         -- stored image size in pixels
    height INTEGER NOT NULL,
    bytes INTEGER NOT NULL,         -- file size
    sha256 TEXT NOT NULL,           -- of the file
    faces_blurred INTEGER NOT NULL, -- faces found and blurred before the file was written
    source TEXT NOT NULL,           -- kiosk | cli | import
    colour TEXT NOT NULL            -- 2x2 mean BGR of the centre square, 24 hex digits ('' = not measured)
);
CREATE INDEX IF NOT EXISTS captures_time ON captures (time_utc);
CREATE INDEX IF NOT EXISTS captures_sha ON captures (sha256);
CREATE TABLE IF NOT EXISTS repairs (
    time_utc TEXT NOT NULL, action TEXT NOT NULL, file TEXT NOT NULL, reason TEXT NOT NULL
);
"""


class StoreError(UserError):
    """The capture store cannot be opened or used; the message says why and what to do."""


class StoreFull(StoreError):
    """A capture was refused for lack of space; nothing was written."""


class ManifestDamaged(StoreError):
    """The store's manifest.sqlite is unreadable, empty or not a capture manifest (`capture repair` recovers)."""

    def __init__(self, root: Path, detail: str) -> None:
        self.root = root
        self.detail = detail
        super().__init__(f"the capture manifest {root / MANIFEST} is damaged ({detail}). `atelier capture repair "
                         f"{root}` recovers what it can (the damaged file is kept in quarantine/), or restore the "
                         "store from an export (`atelier capture import`)")


@dataclass(frozen=True)
class FrameQuality:
    """What the capture pipeline measured on a frame; stored with the capture."""

    sharpness: float
    mean_luma: float
    dark_fraction: float
    bright_fraction: float
    dhash: int  # 64-bit difference hash
    faces_blurred: int = 0
    colour: str = ""  # 2x2 mean BGR of the centre square as 24 hex digits (the dedupe's colour check)


@dataclass(frozen=True)
class CaptureRecord:
    """One manifest row."""

    id: str
    time_utc: str
    class_name: str
    file: str
    dhash: int
    sharpness: float
    mean_luma: float
    dark_fraction: float
    bright_fraction: float
    width: int
    height: int
    bytes: int
    sha256: str
    faces_blurred: int
    source: str
    colour: str = ""

    def to_json(self) -> dict[str, Any]:
        """The row as plain JSON (dHash as 16 hex digits)."""
        data = asdict(self)
        data["dhash"] = f"{self.dhash:016x}"
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CaptureRecord:
        """Inverse of `to_json`, checking every field's JSON type (a row from an archive is not trusted).

        Raises:
            KeyError: a field is missing.
            ValueError: a field has the wrong type or an impossible value (the message names the field).
        """
        values = {f: data[f] for f in cls.__dataclass_fields__ if f != "colour"}
        for name in ("id", "time_utc", "class_name", "file", "sha256", "source"):
            if not isinstance(values[name], str):
                raise ValueError(f"{name} must be text, got {values[name]!r}")
        for name in ("sharpness", "mean_luma", "dark_fraction", "bright_fraction"):
            value = values[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            values[name] = float(value)
        for name in ("width", "height", "bytes", "faces_blurred"):
            value = values[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
        try:
            dt.datetime.fromisoformat(values["time_utc"])
        except ValueError:
            raise ValueError(f"time_utc must be an ISO 8601 time, got {values['time_utc']!r}") from None
        if not isinstance(values["dhash"], str) or not re.fullmatch(r"[0-9a-f]{16}", values["dhash"]):
            raise ValueError(f"dhash must be 16 hex digits, got {values['dhash']!r}")
        values["dhash"] = int(values["dhash"], 16)
        colour = data.get("colour", "")
        if not isinstance(colour, str):
            raise ValueError(f"colour must be text, got {colour!r}")
        values["colour"] = colour
        return cls(**values)


@dataclass
class RepairReport:
    """What opening the store for writing fixed after an interrupted write."""

    quarantined: list[str]
    dropped_rows: list[str]

    @property
    def clean(self) -> bool:
        return not self.quarantined and not self.dropped_rows


def validate_class_name(name: object) -> str:
    """Normalise a garment class typed at the kiosk or given on the command line, or raise StoreError.

    Letters, digits, spaces and . & + ' - _ inside; 1 to 64 characters; NFC-normalised, outer spaces removed
    and inner runs of spaces collapsed. Class names are only ever stored as data, never used in a path.
    """
    if not isinstance(name, str):
        raise StoreError("the garment class must be text, e.g. 't-shirt'")
    text = " ".join(unicodedata.normalize("NFC", name).split())
    if not text:
        raise StoreError("choose or type the garment's class (e.g. 't-shirt')")
    if len(text) > MAX_CLASS_CHARS:
        raise StoreError(f"the class name is longer than {MAX_CLASS_CHARS} characters; use a shorter one")
    if not _CLASS_NAME.match(text):
        raise StoreError(f"class {text!r} has characters a class name cannot have: use letters, digits, "
                         "spaces and - _ . & + ', starting and ending with a letter or digit")
    return text


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(t: dt.datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_capture_id(t: dt.datetime | None = None) -> str:
    """A fresh capture ID: UTC time to the millisecond and 8 random hex digits (sorts by time)."""
    t = t or _utc_now()
    return f"{t:%Y%m%dT%H%M%S}{t.microsecond // 1000:03d}-{secrets.token_hex(4)}"


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_store(path: str | Path) -> bool:
    """True when `path` is a folder holding a capture store manifest."""
    return (Path(path) / MANIFEST).is_file()


def take_writer_lock(root: Path) -> int:
    """Hold the store's writer lock (flock on .lock); returns its fd (closing it releases the lock)."""
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(f"capture store {root} is open for writing by another process (the kiosk?); "
                         "stop it first, or read the store with `atelier capture list`") from None
    return fd


def check_manifest_file(root: Path) -> None:
    """Raise ManifestDamaged when manifest.sqlite is not a regular file, or is missing or empty beside images.

    A missing or empty manifest is a new store only while images/ is empty: with images there, opening it would
    start a blank manifest and quarantine every image (their classes live only in the manifest).
    """
    path = root / MANIFEST
    if path.exists() and not path.is_file():
        raise ManifestDamaged(root, "it is not a regular file")
    empty = not path.exists() or path.stat().st_size == 0
    images = root / IMAGES
    if empty and images.is_dir() and any(images.iterdir()):
        raise ManifestDamaged(root, f"it is {'empty' if path.exists() else 'missing'}, but {IMAGES}/ holds images")


def check_manifest_tables(db: sqlite3.Connection) -> str | None:
    """What is wrong with an open manifest: its pages (quick_check) or its tables; None when it is sound.

    Raises:
        sqlite3.DatabaseError: the file is not a database at all.
    """
    problems = [line for row in db.execute("PRAGMA quick_check(3)").fetchall() for line in str(row[0]).splitlines()
                if line and not line.startswith("***")]
    if problems != ["ok"]:
        return f"SQLite finds it corrupt: {'; '.join(problems)}"
    for table, columns in _TABLES.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})").fetchall()}
        if not have:
            continue  # created on first open (an old or a new store)
        missing = [c for c in columns if c not in have]
        if missing:
            return f"its {table} table lacks {', '.join(missing)}: it is not a capture manifest"
    return None


def _full_message(root: Path, detail: str) -> str:
    return (f"capture refused: the capture store {root} is out of space ({detail}). Nothing was written. "
            "Export the captures (`atelier capture export`) and free space, or raise the store's limit")


class CaptureStore:
    """A capture store folder, opened for writing (one process at a time) or read-only.

    Args:
        root: the store folder. For writing it is created when missing; an existing folder must be empty or
            already a store.
        writable: open for writing: take the store's lock and repair what an interrupted write left.
            Read-only stores see only committed rows (every one of which has its file).
        max_bytes: the most the store may hold (images plus manifest); None = no limit but the disk's.
        min_free_bytes: refuse a capture that would leave less than this free on the store's disk; None skips
            the check (a disk whose free space statvfs cannot tell, e.g. under quotas: ENOSPC/EDQUOT still
            refuse the capture cleanly).
        jpeg_quality: JPEG quality of `add_frame` (1..100).

    Raises:
        StoreError: the folder is not a store, is in use by another writer, or has a newer format.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        writable: bool = True,
        max_bytes: int | None = None,
        min_free_bytes: int | None = DEFAULT_MIN_FREE_BYTES,
        jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    ) -> None:
        self.root = Path(root)
        self.writable = writable
        self.max_bytes = max_bytes
        self.min_free_bytes = None if min_free_bytes is None else max(0, int(min_free_bytes))
        if not 1 <= jpeg_quality <= 100:
            raise StoreError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
        if max_bytes is not None and max_bytes <= 0:
            raise StoreError(f"max_bytes must be positive (or unset), got {max_bytes}")
        self.jpeg_quality = jpeg_quality
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self.last_repair = RepairReport([], [])
        if writable:
            self._open_writable()
        else:
            self._open_readonly()
        self._image_bytes = self._sum_bytes()

    # Opening ---------------------------------------------------------------------------------------------

    def _open_writable(self) -> None:
        root = self.root
        if root.exists() and not root.is_dir():
            raise StoreError(f"capture store {root} is a file; give a folder")
        if root.is_dir():
            check_manifest_file(root)
        if root.is_dir() and not is_store(root) and any(p.name not in _OWN_NAMES for p in root.iterdir()):
            raise StoreError(f"{root} is not empty and is not a capture store (no {MANIFEST}); "
                             "give an empty or new folder for the store")
        try:
            for sub in (root, root / IMAGES, root / QUARANTINE, root / TMP):
                sub.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the capture store at {root}: {exc.strerror or exc}") from None
        self._lock_fd = take_writer_lock(root)
        try:
            check_manifest_file(root)  # again, under the lock
            self._db = sqlite3.connect(root / MANIFEST, isolation_level=None, check_same_thread=False)
            problem = check_manifest_tables(self._db)
            if problem:
                raise ManifestDamaged(root, problem)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._check_format(create=True)
            self.last_repair = self._repair()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise ManifestDamaged(root, str(exc)) from None
        except BaseException:
            self.close()
            raise

    def _open_readonly(self) -> None:
        path = self.root / MANIFEST
        if not path.exists():
            raise StoreError(f"{self.root} is not a capture store (no {MANIFEST}); "
                             "give the folder the kiosk captures into")
        check_manifest_file(self.root)
        if path.stat().st_size == 0:
            raise ManifestDamaged(self.root, "it is empty")
        try:
            self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("SELECT count(*) FROM captures").fetchone()
        except sqlite3.OperationalError:
            # A store on read-only media: no -shm can be made next to it; read it as an immutable file.
            self._db = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True, isolation_level=None,
                                       check_same_thread=False)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise ManifestDamaged(self.root, str(exc)) from None
        try:
            problem = check_manifest_tables(self._db)
            if problem:
                raise ManifestDamaged(self.root, problem)
            self._check_format(create=False)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise ManifestDamaged(self.root, str(exc)) from None
        except BaseException:
            self.close()
            raise

    def _check_format(self, create: bool) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
        if row is None:
            if not create:
                raise StoreError(f"{self.root / MANIFEST} has no format version: it is not a capture store")
            with self._transaction():
                self._db.execute("INSERT INTO meta VALUES ('format_version', ?)", (str(FORMAT_VERSION),))
                self._db.execute("INSERT INTO meta VALUES ('created_utc', ?)", (_iso(_utc_now()),))
            return
        version = int(row[0])
        if version != FORMAT_VERSION:
            hint = "upgrade atelier" if version > FORMAT_VERSION else "import an export of it"
            raise StoreError(f"capture store {self.root} has format version {version}; this atelier reads "
                             f"version {FORMAT_VERSION}: {hint}")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the manifest and release the writer's lock (safe to call twice)."""
        db = getattr(self, "_db", None)
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()
            self._db = None  # type: ignore[assignment]
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def __enter__(self) -> CaptureStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Repair ----------------------------------------------------------------------------------------------

    def _quarantine(self, path: Path, reason: str) -> str:
        stamp = _utc_now().strftime("%Y%m%dT%H%M%S")
        target = self.root / QUARANTINE / f"{stamp}-{path.name}"
        n = 1
        while target.exists():
            target = self.root / QUARANTINE / f"{stamp}-{n}-{path.name}"
            n += 1
        os.replace(path, target)
        self._record_repair("quarantined", path.name, reason)
        log.warning("event=capture_store_repair action=quarantined file=%s reason=%r to=%s", path.name, reason,
                    target)
        return target.name

    def _record_repair(self, action: str, file: str, reason: str) -> None:
        with self._lock, self._transaction():
            self._db.execute("INSERT INTO repairs VALUES (?, ?, ?, ?)", (_iso(_utc_now()), action, file, reason))

    def _repair(self) -> RepairReport:
        report = RepairReport([], [])
        rows = {file: (cid, size) for cid, file, size in self._db.execute("SELECT id, file, bytes FROM captures")}
        for part in sorted((self.root / TMP).iterdir()):
            report.quarantined.append(self._quarantine(part, "incomplete write (interrupted before its row)"))
        for path in sorted((self.root / IMAGES).iterdir()):
            if path.name not in rows:
                report.quarantined.append(self._quarantine(path, "image without a manifest row"))
        for file, (cid, size) in rows.items():
            path = self.root / IMAGES / file
            reason = None
            if not path.is_file():
                reason = "its file is missing"
            elif path.stat().st_size != size:
                reason = f"its file has {path.stat().st_size} bytes, the row says {size}"
                report.quarantined.append(self._quarantine(path, "size differs from its manifest row"))
            if reason:
                with self._transaction():
                    self._db.execute("DELETE FROM captures WHERE id = ?", (cid,))
                self._record_repair("dropped_row", file, reason)
                log.warning("event=capture_store_repair action=dropped_row id=%s reason=%r", cid, reason)
                report.dropped_rows.append(cid)
        if not report.clean:
            fsync_dir(self.root / QUARANTINE)
            fsync_dir(self.root / IMAGES)
            log.warning("capture store %s repaired: %d files quarantined, %d rows dropped", self.root,
                        len(report.quarantined), len(report.dropped_rows))
        return report

    # Reading ---------------------------------------------------------------------------------------------

    def _sum_bytes(self) -> int:
        (total,) = self._db.execute("SELECT coalesce(sum(bytes), 0) FROM captures").fetchone()
        return int(total)

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[CaptureRecord]:
        with self._lock:
            cursor = self._db.execute(sql, args)
            return [_record(row) for row in cursor.fetchall()]

    def records(self, class_name: str | None = None) -> list[CaptureRecord]:
        """Every capture (of one class when given), oldest first."""
        where, args = ("WHERE class = ?", (class_name,)) if class_name is not None else ("", ())
        return self._rows(f"SELECT {_COLUMNS} FROM captures {where} ORDER BY time_utc, id", args)

    def get(self, capture_id: str) -> CaptureRecord | None:
        """The row of one capture, or None."""
        rows = self._rows(f"SELECT {_COLUMNS} FROM captures WHERE id = ?", (capture_id,))
        return rows[0] if rows else None

    def find_sha256(self, sha256: str) -> CaptureRecord | None:
        """A capture whose file has this sha256, or None."""
        rows = self._rows(f"SELECT {_COLUMNS} FROM captures WHERE sha256 = ? LIMIT 1", (sha256,))
        return rows[0] if rows else None

    def class_counts(self) -> dict[str, int]:
        """Captures per class, by class name."""
        with self._lock:
            rows = self._db.execute("SELECT class, count(*) FROM captures GROUP BY class ORDER BY class")
            return {name: int(n) for name, n in rows.fetchall()}

    def recent(self, n: int) -> list[tuple[str, int, str]]:
        """(id, dHash, colour) of the newest `n` captures, newest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, dhash, colour FROM captures ORDER BY time_utc DESC, id DESC "
                                    "LIMIT ?", (int(n),)).fetchall()
        return [(cid, int(h, 16), colour) for cid, h, colour in rows]

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM captures").fetchone()[0])

    def image_path(self, record: CaptureRecord) -> Path:
        """Where a capture's JPEG is."""
        return self.root / IMAGES / record.file

    def quarantined(self) -> list[str]:
        """Names of the files in quarantine/."""
        folder = self.root / QUARANTINE
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def repairs(self) -> list[dict[str, str]]:
        """The repair log: time, action, file, reason."""
        with self._lock:
            rows = self._db.execute("SELECT time_utc, action, file, reason FROM repairs ORDER BY rowid")
            return [dict(zip(("time_utc", "action", "file", "reason"), r, strict=True)) for r in rows.fetchall()]

    def used_bytes(self) -> int:
        """Bytes of the images plus the manifest files."""
        extra = sum((self.root / name).stat().st_size for name in (MANIFEST, f"{MANIFEST}-wal")
                    if (self.root / name).is_file())
        return self._image_bytes + extra

    def verify(self) -> list[dict[str, str]]:
        """Check every row's file against its size and sha256; returns the problems (empty: all intact)."""
        problems = []
        for record in self.records():
            path = self.image_path(record)
            if not path.is_file():
                problems.append({"id": record.id, "file": record.file, "problem": "file missing"})
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if path.stat().st_size != record.bytes or digest != record.sha256:
                problems.append({"id": record.id, "file": record.file, "problem": "checksum mismatch"})
        return problems

    def repair_damaged(self) -> RepairReport:
        """The full check: a file failing its size or sha256 goes to quarantine and its row is dropped."""
        if not self.writable:
            raise StoreError(f"capture store {self.root} is open read-only")
        report = RepairReport([], [])
        for problem in self.verify():
            path = self.root / IMAGES / problem["file"]
            if path.is_file():
                report.quarantined.append(self._quarantine(path, problem["problem"]))
            with self._lock, self._transaction():
                row = self._db.execute("SELECT bytes FROM captures WHERE id = ?", (problem["id"],)).fetchone()
                self._db.execute("DELETE FROM captures WHERE id = ?", (problem["id"],))
            self._image_bytes -= int(row[0]) if row else 0
            self._record_repair("dropped_row", problem["file"], problem["problem"])
            report.dropped_rows.append(problem["id"])
        if not report.clean:
            fsync_dir(self.root / IMAGES)
            fsync_dir(self.root / QUARANTINE)
        return report

    # Writing ---------------------------------------------------------------------------------------------

    def check_space(self, n_bytes: int) -> None:
        """Raise StoreFull when writing `n_bytes` more would pass `max_bytes` or the free-space floor."""
        needed = n_bytes + MANIFEST_MARGIN_BYTES
        if self.max_bytes is not None and self.used_bytes() + needed > self.max_bytes:
            raise StoreFull(_full_message(
                self.root, f"{self.used_bytes() / 1e6:.1f} MB used of its {self.max_bytes / 1e6:.1f} MB limit"))
        if self.min_free_bytes is None:
            return
        st = os.statvfs(self.root)
        free = st.f_bavail * st.f_frsize
        if free - needed < self.min_free_bytes:
            raise StoreFull(_full_message(
                self.root, f"{free / 1e6:.1f} MB free on its disk, {self.min_free_bytes / 1e6:.1f} MB must stay free"))

    def add_frame(
        self, bgr: np.ndarray, *, class_name: str, quality: FrameQuality, source: str = "kiosk"
    ) -> CaptureRecord:
        """Encode a BGR frame as JPEG and add it (see `add_jpeg`). The frame must already be blurred."""
        import cv2

        if not isinstance(bgr, np.ndarray) or bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
            raise StoreError("a capture must be an H x W x 3 uint8 BGR frame")
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise StoreError("JPEG encoding of the capture failed")
        h, w = bgr.shape[:2]
        return self.add_jpeg(buf.tobytes(), class_name=class_name, quality=quality, width=w, height=h,
                             source=source)

    def add_jpeg(
        self,
        jpeg: bytes,
        *,
        class_name: str,
        quality: FrameQuality,
        width: int,
        height: int,
        source: str = "kiosk",
        capture_id: str | None = None,
        time_utc: str | None = None,
    ) -> CaptureRecord:
        """Write one capture: the file (temp, fsync, rename, fsync folder), then its row in a transaction.

        Args:
            jpeg: the encoded image.
            class_name: the garment class (validated).
            quality: what the pipeline measured.
            width: image width in pixels.
            height: image height in pixels.
            source: "kiosk", "cli" or "import".
            capture_id: keep this ID (imports); a fresh one is made when None.
            time_utc: keep this capture time (imports); now when None.

        Returns:
            The new row.

        Raises:
            StoreFull: not enough space; nothing was written.
            StoreError: a read-only store, a bad class or ID, or another write failure (nothing kept).
        """
        if not self.writable:
            raise StoreError(f"capture store {self.root} is open read-only")
        class_name = validate_class_name(class_name)
        now = _utc_now()
        cid = capture_id or new_capture_id(now)
        if not CAPTURE_ID.match(cid):
            raise StoreError(f"capture ID {cid!r} is not one this store makes")
        file = f"{cid}.jpg"
        sha = hashlib.sha256(jpeg).hexdigest()
        record = CaptureRecord(
            id=cid, time_utc=time_utc or _iso(now), class_name=class_name, file=file,
            dhash=int(quality.dhash) & 0xFFFF_FFFF_FFFF_FFFF, sharpness=float(quality.sharpness),
            mean_luma=float(quality.mean_luma), dark_fraction=float(quality.dark_fraction),
            bright_fraction=float(quality.bright_fraction), width=int(width), height=int(height),
            bytes=len(jpeg), sha256=sha, faces_blurred=int(quality.faces_blurred), source=source,
            colour=quality.colour if re.fullmatch(r"[0-9a-f]{24}", quality.colour) else "",
        )
        with self._lock:
            if self._db.execute("SELECT 1 FROM captures WHERE id = ?", (cid,)).fetchone():
                raise StoreError(f"capture {cid} is already in the store")
            self.check_space(len(jpeg))
            final = self.root / IMAGES / file
            self._write_file(final, jpeg)
            try:
                with self._transaction():
                    self._db.execute(f"INSERT INTO captures ({_COLUMNS}) VALUES ({_PLACEHOLDERS})",
                                     _row(record))
            except sqlite3.Error as exc:
                # No row: the file must go too, or start-up would quarantine it as an orphan.
                with contextlib.suppress(OSError):
                    final.unlink()
                    fsync_dir(final.parent)
                if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc).lower():
                    raise StoreFull(_full_message(self.root, f"the manifest could not grow: {exc}")) from None
                raise StoreError(f"capture refused: the manifest could not be written ({exc}: is the disk full "
                                 "or failing?); nothing was kept") from None
            self._image_bytes += len(jpeg)
        log.info("event=capture_stored id=%s class=%r bytes=%d faces_blurred=%d", cid, class_name, len(jpeg),
                 record.faces_blurred)
        return record

    def _write_file(self, final: Path, data: bytes) -> None:
        part = self.root / TMP / f"{final.name}.part"
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise self._write_error(exc) from None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            part.unlink(missing_ok=True)
            raise self._write_error(exc) from None
        os.close(fd)
        try:
            os.rename(part, final)
            fsync_dir(final.parent)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise self._write_error(exc) from None

    def _write_error(self, exc: OSError) -> StoreError:
        if exc.errno in _FULL_ERRNOS:
            return StoreFull(_full_message(self.root, os.strerror(exc.errno or 0)))
        return StoreError(f"capture refused: writing to {self.root} failed ({exc.strerror or exc}); "
                          "nothing was kept")


_FIELDS = ("id", "time_utc", "class", "file", "dhash", "sharpness", "mean_luma", "dark_fraction",
           "bright_fraction", "width", "height", "bytes", "sha256", "faces_blurred", "source", "colour")
_TABLES = {"meta": ("key", "value"), "captures": _FIELDS, "repairs": ("time_utc", "action", "file", "reason")}
_COLUMNS = ", ".join(_FIELDS)
_PLACEHOLDERS = ", ".join("?" for _ in _FIELDS)


def _row(r: CaptureRecord) -> tuple[Any, ...]:
    return (r.id, r.time_utc, r.class_name, r.file, f"{r.dhash:016x}", r.sharpness, r.mean_luma, r.dark_fraction,
            r.bright_fraction, r.width, r.height, r.bytes, r.sha256, r.faces_blurred, r.source, r.colour)


def _record(row: tuple[Any, ...]) -> CaptureRecord:
    (cid, time_utc, class_name, file, dhash, sharpness, mean_luma, dark, bright, width, height, size, sha, faces,
     source, colour) = row
    return CaptureRecord(cid, time_utc, class_name, file, int(dhash, 16), float(sharpness), float(mean_luma),
                         float(dark), float(bright), int(width), int(height), int(size), sha, int(faces), source,
                         colour)

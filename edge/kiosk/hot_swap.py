"""Model hot swap: watch a models folder, verify a new bundle in the background, swap it in atomically, roll back.

A bundle folder that appears (or changes) in `models_dir` — copied there, exported there by `atelier finetune
--bundle-out`, or uploaded by staff — is verified in a background thread before it may serve:

1. `edge.bundle.load_bundle`: format version, required fields, the size and sha256 of every model file;
2. its manifest's parity report: the export must have passed its own floor (int8 vs the float generator) and
   not been forced through;
3. it loads and generates: every batch model draws a fixed set of designs (right shape, finite, not flat);
4. parity within the manifest's bound on this machine: every batch model's designs against the canonical
   (smallest batch) model's, in PSNR, must reach the manifest's `min_psnr_db`.

Only then is a generation worker started (warmed up) for it and swapped into the running `KioskService` under its
lock: a request is served entirely by the old model or entirely by the new one. The old worker finishes what it
has queued and stops. A bundle that fails any step is rejected with one log line (`event=model_rejected`) and
`/healthz` reports it under `model_error`; the old model keeps serving. Rollback swaps the previous bundle back
(verified again: its files may have changed); bundle folders are never deleted.

Folders whose name starts with "." are ignored (exports and uploads are staged under such names and renamed into
place when complete). The watcher remembers what it has seen in `<models_dir>/.hot-swap.json`, so a restart does
not re-apply a bundle that was rolled back or rejected, and restores the model that was active.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import math
import os
import queue
import re
import secrets
import shutil
import tarfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import MANIFEST, Bundle, BundleError, load_bundle
from edge.errors import UserError

log = logging.getLogger(__name__)

STATE_FILE = ".hot-swap.json"
VERIFY_N = 16  # designs each batch model draws during verification
VERIFY_SEED = 20_251_125
MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # the upload as sent (a .tar, or a .tar.gz)
# Unpacked: the sum of the member sizes a .tar.gz may expand to (bundle models barely compress, so a real bundle
# unpacks to about its upload size; a "tar bomb" of zeros is refused before anything is written).
MAX_UNPACKED_BYTES = 2 * MAX_UPLOAD_BYTES
MAX_UPLOAD_MEMBERS = 64  # a bundle is a manifest and a few model files
# Free space kept on the models folder's disk beyond the unpacked upload (logs, captures, the state file).
UPLOAD_FREE_MARGIN_BYTES = 32 * 1024 * 1024
_COPY_CHUNK = 1024 * 1024
MAX_MANIFEST_BYTES = 1024 * 1024
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class ModelRejected(UserError):
    """A bundle failed verification; the message says which check and why."""


@dataclass(frozen=True)
class Verified:
    """A bundle that passed every check, with what the checks measured."""

    bundle: Bundle
    report: dict[str, Any]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else min(100.0, 10 * math.log10(255.0**2 / mse))


def verify_bundle(path: str | Path, *, num_threads: int = 2, delegate: str = "cpu") -> Verified:
    """Run every check a bundle must pass before it serves (see the module docstring).

    Raises:
        ModelRejected: naming the failed check.
    """
    from edge.designs import DesignGenerator

    path = Path(path)
    try:
        bundle = load_bundle(path)
    except BundleError as exc:
        raise ModelRejected(f"{path.name}: {exc}") from None
    parity = bundle.manifest.get("parity")
    if not isinstance(parity, dict) or "min_psnr_db" not in parity or "models" not in parity:
        raise ModelRejected(f"{path.name}: its manifest has no parity report; export it with `atelier export`")
    if not parity.get("passed") or parity.get("forced"):
        raise ModelRejected(f"{path.name}: its export did not pass parity (worst {parity.get('worst_psnr_db')} dB, "
                            f"floor {parity.get('min_psnr_db')} dB); a forced export is not hot-swapped")
    floor = float(parity["min_psnr_db"])
    rng = np.random.default_rng(VERIFY_SEED)
    shape = (VERIFY_N, bundle.z_dim)
    z = (rng.uniform(-1, 1, shape) if bundle.z_distribution == "uniform" else rng.standard_normal(shape))
    z = z.astype(np.float32)
    classes = list(np.arange(VERIFY_N) % len(bundle.class_names)) if bundle.class_names else None
    outputs: dict[int, np.ndarray] = {}
    for batch in bundle.batches:
        try:
            images = DesignGenerator(bundle, batch=batch, num_threads=num_threads, delegate=delegate).generate(
                z, classes)
        except (UserError, ValueError, RuntimeError) as exc:
            raise ModelRejected(f"{path.name}: batch-{batch} model does not run: {exc}") from None
        if images.shape != (VERIFY_N, bundle.size_px, bundle.size_px, 3) or images.dtype != np.uint8:
            raise ModelRejected(f"{path.name}: batch-{batch} model drew {images.dtype} {images.shape}")
        if float(images.std()) < 1.0:
            raise ModelRejected(f"{path.name}: batch-{batch} model draws flat pictures (std {images.std():.2f})")
        outputs[batch] = images
    canonical = min(outputs)
    measured = {str(b): round(_psnr(outputs[canonical], img), 2) for b, img in outputs.items() if b != canonical}
    worst = min(measured.values(), default=100.0)
    if worst < floor:
        raise ModelRejected(f"{path.name}: its batch models disagree on this machine ({worst:.1f} dB PSNR between "
                            f"batch sizes, below the manifest's {floor:g} dB)")
    return Verified(bundle, {"batch_psnr_db": measured, "floor_db": floor, "designs": VERIFY_N})


def _signature(folder: Path) -> str:
    """Names, sizes and mtimes of a folder's files: changes while a bundle is still being copied."""
    parts = []
    for p in sorted(folder.iterdir()):
        if p.is_file():
            st = p.stat()
            parts.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class ModelManager:
    """Watches `models_dir`, verifies candidates one at a time in a background thread, swaps, rolls back.

    Args:
        swap: called with a verified bundle; builds and warms its worker and swaps it in (raises to refuse).
        current: the bundle folder serving now.
        models_dir: the folder to watch (None: no watching; uploads are refused).
        poll_s: seconds between scans (0: no scanning; uploads and rollback still work).
        num_threads: interpreter threads for verification.
        delegate: interpreter delegate for verification.
    """

    def __init__(
        self,
        swap: Callable[[Verified], None],
        current: Path,
        models_dir: Path | None,
        *,
        poll_s: float = 2.0,
        num_threads: int = 2,
        delegate: str = "cpu",
    ) -> None:
        self._swap = swap
        self.models_dir = models_dir
        self.poll_s = poll_s
        self.num_threads = num_threads
        self.delegate = delegate
        self._lock = threading.Lock()
        self._jobs: queue.Queue[tuple[str, Path | None, threading.Event | None] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.active = Path(current).resolve()
        self.history: list[str] = []  # previous bundle folders, most recent last
        self.seen: dict[str, str] = {}  # folder name -> signature already handled
        self.model_error: dict[str, Any] | None = None
        self.last_swap: dict[str, Any] | None = None
        self.verifying: str | None = None
        self._results: dict[int, tuple[bool, str]] = {}
        self._restore: str | None = None  # the bundle a previous run left active (from the state file)
        self._load_state()

    # State -----------------------------------------------------------------------------------------------

    def _state_path(self) -> Path | None:
        return None if self.models_dir is None else self.models_dir / STATE_FILE

    def _load_state(self) -> None:
        path = self._state_path()
        if path is None or not self.models_dir or not self.models_dir.is_dir():
            return
        if path.is_file():
            try:
                state = json.loads(path.read_text())
                self.seen = {str(k): str(v) for k, v in state.get("seen", {}).items()}
                self.history = [str(h) for h in state.get("history", [])]
                self._restore = state["active"] if isinstance(state.get("active"), str) else None
                return
            except (OSError, ValueError, AttributeError, TypeError) as exc:
                # Damaged: start as on a first start, so nothing already there (a rolled-back bundle) swaps in.
                log.warning("ignoring unreadable %s (%s); what the models folder holds now is the baseline",
                            path, exc)
                self.seen, self.history, self._restore = {}, [], None
        # First start: what is there now is the baseline, only later arrivals are swapped in.
        self.seen = {p.name: _signature(p) for p in self._bundle_dirs()}

    def _save_state(self) -> None:
        path = self._state_path()
        if path is None or not path.parent.is_dir():
            return
        state = {"active": str(self.active), "history": self.history[-20:], "seen": self.seen,
                 "updated_utc": _now_iso()}
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text(json.dumps(state, indent=1) + "\n")
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot save %s (%s); hot-swap state is kept in memory only", path, exc)

    def _bundle_dirs(self) -> list[Path]:
        if self.models_dir is None or not self.models_dir.is_dir():
            return []
        return sorted((p for p in self.models_dir.iterdir()
                       if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file()),
                      key=lambda p: (p.stat().st_mtime_ns, p.name))

    # Thread ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the verifier thread (restoring the model a previous run left active, if it still verifies)."""
        restore = self._restore
        if restore and Path(restore).resolve() != self.active and Path(restore).is_dir():
            self._jobs.put(("restore", Path(restore), None))
        self._thread = threading.Thread(target=self._run, name="model-hot-swap", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the current verification."""
        self._stop.set()
        self._jobs.put(None)
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        next_scan = 0.0
        while not self._stop.is_set():
            timeout = max(0.05, next_scan - time.monotonic()) if self.poll_s > 0 else None
            try:
                job = self._jobs.get(timeout=timeout)
            except queue.Empty:
                job = ("scan", None, None)
            if job is None:
                return
            kind, path, done = job
            try:
                if kind == "scan":
                    self.scan_once()
                    next_scan = time.monotonic() + self.poll_s
                elif kind == "rollback":
                    self._rollback(done)
                elif path is not None:
                    self._try(path, kind, done)
            except Exception:  # the watcher must outlive any one bad bundle
                log.exception("event=hot_swap_error job=%s", kind)
                if done is not None:
                    self._results[id(done)] = (False, "internal error; see the log")
                    done.set()

    # Work ------------------------------------------------------------------------------------------------

    def scan_once(self) -> list[str]:
        """Queue nothing, verify now: every bundle folder that is new or changed since it was last seen."""
        handled = []
        for folder in self._bundle_dirs():
            sig = _signature(folder)
            if self.seen.get(folder.name) == sig or folder.resolve() == self.active:
                continue
            self.seen[folder.name] = sig
            handled.append(folder.name)
            self._try(folder, "new bundle", None)
        if handled:
            self._save_state()
        return handled

    def _try(self, folder: Path, why: str, done: threading.Event | None, *, push_history: bool = True) -> bool:
        with self._lock:
            self.verifying = folder.name
        try:
            log.info("event=model_verify bundle=%s reason=%r", folder, why)
            verified = verify_bundle(folder, num_threads=self.num_threads, delegate=self.delegate)
            self._swap(verified)
        except Exception as exc:  # any failure of a candidate is a rejection; the current model keeps serving
            message = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, UserError):
                log.debug("unexpected failure verifying %s", folder, exc_info=True)
            with self._lock:
                self.model_error = {"bundle": str(folder), "error": message, "at_utc": _now_iso()}
                self.verifying = None
            log.error("event=model_rejected bundle=%s error=%r (the current model keeps serving)", folder, message)
            if done is not None:
                self._results[id(done)] = (False, message)
                done.set()
            return False
        with self._lock:
            previous = self.active
            if push_history:
                self.history.append(str(previous))
            self.active = folder.resolve()
            self.model_error = None
            self.verifying = None
            self.last_swap = {"from": str(previous), "to": str(self.active), "model_id": verified.bundle.model_id,
                              "reason": why, "at_utc": _now_iso(), "checks": verified.report}
        self._save_state()
        log.info("event=model_swapped from=%s to=%s model_id=%s", previous, self.active, verified.bundle.model_id)
        if done is not None:
            self._results[id(done)] = (True, verified.bundle.model_id)
            done.set()
        return True

    def _rollback(self, done: threading.Event | None) -> None:
        with self._lock:
            target = self.history[-1] if self.history else None
        if target is None:
            if done is not None:
                self._results[id(done)] = (False, "there is no previous model to roll back to")
                done.set()
            return
        leaving = self.active
        if self._try(Path(target), "rollback", done, push_history=False):
            with self._lock:
                self.history.pop()
                # The bundle rolled back from stays "seen": the watcher will not swap it in again.
                if self.models_dir is not None and leaving.parent == self.models_dir.resolve():
                    self.seen[leaving.name] = _signature(leaving) if leaving.is_dir() else ""
            self._save_state()

    def _call(self, kind: str, path: Path | None, timeout_s: float) -> tuple[bool, str]:
        done = threading.Event()
        self._jobs.put((kind, path, done))
        if not done.wait(timeout_s):
            return False, f"{kind} still running after {timeout_s:.0f} s; see /healthz"
        return self._results.pop(id(done))

    def rollback(self, timeout_s: float = 120.0) -> tuple[bool, str]:
        """Swap the previous bundle back in (verified again). Returns (ok, model_id or why not)."""
        return self._call("rollback", None, timeout_s)

    def submit(self, folder: Path, why: str = "upload", timeout_s: float = 120.0) -> tuple[bool, str]:
        """Verify and swap one bundle folder now (waits for the verifier). Returns (ok, model_id or why not)."""
        if self.models_dir is not None and folder.parent.resolve() == self.models_dir.resolve():
            self.seen[folder.name] = _signature(folder)
        return self._call(why, folder, timeout_s)

    def status(self) -> dict[str, Any]:
        """What /healthz and the staff page show."""
        with self._lock:
            return {"models_dir": None if self.models_dir is None else str(self.models_dir),
                    "active": str(self.active), "previous": self.history[-1] if self.history else None,
                    "verifying": self.verifying, "last_swap": self.last_swap, "model_error": self.model_error}

    # Upload ----------------------------------------------------------------------------------------------

    def receive_upload(self, data: bytes) -> Path:
        """Unpack an uploaded bundle (.tar, optionally gzipped) into the models folder; returns its folder.

        Members must be regular files with plain names (a single top folder is allowed and dropped); nothing
        else is written. Their sizes must sum to at most MAX_UNPACKED_BYTES and fit on the disk with
        UPLOAD_FREE_MARGIN_BYTES to spare (checked before anything is written; the bytes copied are counted
        too). The folder is staged under a dot name and renamed into place when complete.

        Raises:
            ModelRejected: the upload is not a safe bundle archive, or it does not fit on the disk.
        """
        if self.models_dir is None:
            raise ModelRejected("this kiosk has no models folder (models_dir) to upload into")
        if len(data) > MAX_UPLOAD_BYTES:
            raise ModelRejected(f"the upload is over {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
        try:
            tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
            members = _list_members(tar)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise ModelRejected(f"the upload is not a readable .tar of a bundle folder ({exc})") from None
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
        try:
            manifest = json.loads(tar.extractfile(files[MANIFEST]).read())  # type: ignore[union-attr]
            name = str(manifest.get("name", "bundle"))
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise ModelRejected(f"the upload's {MANIFEST} is truncated or damaged ({exc})") from None
        except (ValueError, AttributeError, OSError) as exc:
            raise ModelRejected(f"the upload's {MANIFEST} is not valid JSON ({exc})") from None
        needed = sum(m.size for m in files.values())
        free = _free_bytes(self.models_dir)
        if needed + UPLOAD_FREE_MARGIN_BYTES > free:
            raise ModelRejected(f"not enough free space for the upload in {self.models_dir}: it unpacks to "
                                f"{needed / 2**20:.1f} MB, {free / 2**20:.0f} MB are free and "
                                f"{UPLOAD_FREE_MARGIN_BYTES // 2**20} MB must stay free; remove old bundle folders")
        stem = re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:60].strip(".-") or "bundle"
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        final = self.models_dir / f"{stem}-{stamp}-{secrets.token_hex(2)}"
        staging = self.models_dir / f".upload-{secrets.token_hex(6)}"
        staging.mkdir(parents=True)
        try:
            budget = MAX_UNPACKED_BYTES
            for fname, member in files.items():
                with open(staging / fname, "wb") as out:
                    budget -= _copy_member(tar, member, out, budget)
                    out.flush()
                    os.fsync(out.fileno())
            # Seen before it appears under its final name: a watcher scan between the rename and `submit`
            # must not verify and swap it in a second time.
            self.seen[final.name] = _signature(staging)
            os.rename(staging, final)
        except BaseException:
            self.seen.pop(final.name, None)
            shutil.rmtree(staging, ignore_errors=True)
            raise
        log.info("event=model_uploaded folder=%s files=%d", final, len(files))
        return final


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

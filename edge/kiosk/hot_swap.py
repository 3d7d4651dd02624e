"""Model hot swap: watch a models folder, verify a new bundle in the background, swap it in atomically, roll back.

A bundle folder that appears (or changes) in `models_dir` — copied there, exported there by `atelier finetune
--bundle-out`, or uploaded by staff (`edge.kiosk.bundle_upload`) — is verified in a background thread before it
may serve (`edge.kiosk.bundle_checks.verify_bundle`: manifest and file hashes, the export's parity report, every
batch model generates, batch models agree on this machine).

Only then is a generation worker started (warmed up) for it and swapped into the running `KioskService` under its
lock: a request is served entirely by the old model or entirely by the new one. The old worker finishes what it
has queued and stops. A bundle that fails any step is rejected with one log line (`event=model_rejected`) and
`/healthz` reports it under `model_error`; the old model keeps serving. Rollback swaps the previous bundle back
(verified again: its files may have changed); bundle folders are never deleted.

Folders whose name starts with "." are ignored (exports and uploads are staged under such names and renamed into
place when complete). The watcher remembers what it has seen in `<models_dir>/.hot-swap.json`, so a restart does
not re-apply a bundle that was rolled back or rejected, and restores the model that was active. A damaged state
file is set aside as `.hot-swap.json.damaged` with one log line (`event=hot_swap_state_damaged`); the kiosk keeps
serving the bundle it started with and takes what is in the folder now as the baseline, as on a first start.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.bundle import MANIFEST
from edge.errors import UserError
from edge.kiosk.bundle_checks import ModelRejected, Verified, verify_bundle
from edge.kiosk.bundle_upload import MAX_UNPACKED_BYTES, MAX_UPLOAD_BYTES, MAX_UPLOAD_MEMBERS, stage_upload

log = logging.getLogger(__name__)

STATE_FILE = ".hot-swap.json"


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
        if path.exists():
            try:
                self.seen, self.history, self._restore = _read_state(path)
                return
            except (OSError, ValueError) as exc:
                aside = path.with_name(path.name + ".damaged")
                try:
                    os.replace(path, aside)
                except OSError:
                    aside = path
                log.error("event=hot_swap_state_damaged path=%s error=%r kept_as=%s (serving %s; the bundles in %s "
                          "now are the baseline, as on a first start)", path, str(exc), aside, self.active,
                          self.models_dir)
        # First start (or a damaged state file): what is there now is the baseline, only later arrivals swap in.
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

        The files are staged by `edge.kiosk.bundle_upload.stage_upload` and renamed into place here.

        Raises:
            ModelRejected: the upload is not a safe bundle archive, or it does not fit on the disk.
        """
        if self.models_dir is None:
            raise ModelRejected("this kiosk has no models folder (models_dir) to upload into")
        staged = stage_upload(data, self.models_dir)
        try:
            # Seen before it appears under its final name: a watcher scan between the rename and `submit`
            # must not verify and swap it in a second time.
            self.seen[staged.final.name] = _signature(staged.staging)
            os.rename(staged.staging, staged.final)
        except BaseException:
            self.seen.pop(staged.final.name, None)
            staged.discard()
            raise
        log.info("event=model_uploaded folder=%s files=%d", staged.final, staged.files)
        return staged.final


def _read_state(path: Path) -> tuple[dict[str, str], list[str], str | None]:
    """(seen, history, active) from a state file.

    Raises:
        OSError: it cannot be read.
        ValueError: it is not the JSON object `_save_state` writes (damaged, truncated, hand-edited).
    """
    state = json.loads(path.read_bytes())
    if not isinstance(state, dict):
        raise ValueError(f"expected a JSON object, found {type(state).__name__}")
    seen, history, active = state.get("seen", {}), state.get("history", []), state.get("active")
    if not isinstance(seen, dict) or not all(isinstance(v, str) for v in seen.values()):
        raise ValueError("'seen' must map folder names to signatures")
    if not isinstance(history, list) or not all(isinstance(h, str) for h in history):
        raise ValueError("'history' must be a list of folder paths")
    if active is not None and (not isinstance(active, str) or not active):
        raise ValueError("'active' must be a folder path")
    return {str(k): v for k, v in seen.items()}, list(history), active


__all__ = ["MAX_UNPACKED_BYTES", "MAX_UPLOAD_BYTES", "MAX_UPLOAD_MEMBERS", "STATE_FILE", "ModelManager",
           "ModelRejected", "Verified", "verify_bundle"]

"""Camera frames for the kiosk: one `FrameSource` interface addressed by URI, a newest-frame mailbox, and a
`CameraFeed` thread that keeps the source alive (reconnecting with back-off when it fails or stalls).

URIs (the jetson-inference `videoSource` convention)::

    v4l2:///dev/video0                 a V4L2 camera through OpenCV (MJPG, buffer size 1)
    file://clip.avi  file:///abs.mp4   a video file, looped, paced at its own frame rate
    synthetic://?size=320x240&fps=15   generated frames: procedural garments moving over a backdrop
    synthetic://?garment=t-shirt&colour=c83232   one plain garment of that colour, held still

Between the camera and its consumers there is exactly one slot: a new frame replaces the old one, so a slow
consumer sees the newest frame and never a backlog (google-coral/examples-camera does the same with
`max-buffers=1 drop=true`).
"""

from __future__ import annotations

import abc
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import UserError

log = logging.getLogger(__name__)

SCHEMES: tuple[str, ...] = ("v4l2", "file", "synthetic")


class CameraError(RuntimeError):
    """A source failed to open or to deliver a frame (the feed reconnects)."""


class FrameSource(abc.ABC):
    """A camera-like source of BGR uint8 frames. `open`, then `read` until it raises, then `close`.

    Implementations block in `read` until a frame is due (a camera's own pace, a file's frame rate, a
    synthetic clock). `read` raises CameraError when no frame can be had; it may also block forever (a wedged
    driver), which the CameraFeed detects as a stall.
    """

    uri: str = ""

    @abc.abstractmethod
    def open(self) -> None:
        """Acquire the device or file; raises CameraError."""

    @abc.abstractmethod
    def read(self) -> np.ndarray:
        """The next frame, (H, W, 3) uint8 BGR; raises CameraError."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the device or file; safe to call twice."""


class V4L2Source(FrameSource):
    """A V4L2 camera through OpenCV: MJPG (YUYV tops out at a few fps at 1080p), one-frame driver buffer."""

    def __init__(self, device: str, width: int = 1280, height: int = 720, fps: int = 30) -> None:
        self.uri = f"v4l2://{device}"
        self.device = device
        self.width, self.height, self.fps = width, height, fps
        self._cap = None

    def open(self) -> None:
        import cv2

        if not os.path.exists(self.device):
            raise CameraError(f"{self.device} does not exist (camera unplugged?)")
        cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"OpenCV cannot open {self.device}")
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap

    def read(self) -> np.ndarray:
        if self._cap is None:
            raise CameraError("read before open")
        ok, frame = self._cap.read()
        # OpenCV can report success after an unplug (opencv#14044): check that the device node is still there.
        if not ok or frame is None or not os.path.exists(self.device):
            raise CameraError(f"{self.device}: read failed")
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class FileSource(FrameSource):
    """A video file played in a loop at its own frame rate (or `fps` when the file does not say)."""

    def __init__(self, path: Path, fps: float | None = None) -> None:
        self.uri = f"file://{path}"
        self.path = path
        self._fps_override = fps
        self._cap = None
        self._interval_s = 1 / 15
        self._next_t = 0.0

    def open(self) -> None:
        import cv2

        if not self.path.is_file():
            raise CameraError(f"video file {self.path} does not exist")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"OpenCV cannot open video file {self.path}")
        fps = self._fps_override or cap.get(cv2.CAP_PROP_FPS) or 15.0
        self._interval_s = 1.0 / min(max(fps, 1.0), 60.0)
        self._cap = cap
        self._next_t = time.monotonic()

    def read(self) -> np.ndarray:
        import cv2

        if self._cap is None:
            raise CameraError("read before open")
        ok, frame = self._cap.read()
        if not ok:  # end of file: loop
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._cap.read()
            if not ok:
                raise CameraError(f"video file {self.path} has no readable frame")
        _pace(self)
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class SyntheticSource(FrameSource):
    """Generated frames: a procedural garment sliding across a slowly changing backdrop, a new one every 2 s.

    Deterministic for a seed, so tests and demos see the same pictures; needs no hardware.
    """

    def __init__(self, width: int = 320, height: int = 240, fps: float = 15.0, seed: int = 0,
                 garment: str | None = None, colour: tuple[int, int, int] | None = None) -> None:
        self.uri = f"synthetic://?size={width}x{height}&fps={fps:g}&seed={seed}"
        self.width, self.height, self.seed = width, height, seed
        # Fixed garment (kind and plain RGB colour) held still in the middle: what a shopper does at the kiosk.
        self.garment, self.colour = garment, colour
        self._interval_s = 1.0 / fps
        self._next_t = 0.0
        self._frame_no = 0
        self._garment: np.ndarray | None = None

    def open(self) -> None:
        self._next_t = time.monotonic()
        self._frame_no = 0

    def read(self) -> np.ndarray:
        from edge.procedural_garments import GARMENT_KINDS, render_garment

        per_garment = max(1, round(2.0 / self._interval_s))
        n, phase = divmod(self._frame_no, per_garment)
        side = min(self.width, self.height) * 3 // 4
        if phase == 0 or self._garment is None:
            rng = np.random.default_rng([self.seed, n])
            kind = self.garment or GARMENT_KINDS[n % len(GARMENT_KINDS)]
            pattern = "plain" if self.colour is not None else None
            rgb = render_garment(kind, side, rng, pattern=pattern, colour=self.colour)
            self._garment = np.ascontiguousarray(rgb[:, :, ::-1])
        shade = 96 + int(64 * np.sin(self._frame_no / 20.0))
        frame = np.full((self.height, self.width, 3), (shade, 90, 200 - shade // 2), dtype=np.uint8)
        travel = self.width - side
        x = travel // 2 if self.garment else int(travel * phase / max(per_garment - 1, 1))
        y = (self.height - side) // 2
        frame[y : y + side, x : x + side] = self._garment
        self._frame_no += 1
        _pace(self)
        return frame

    def close(self) -> None:
        self._garment = None


def _pace(source: FileSource | SyntheticSource) -> None:
    """Sleep until the source's next frame is due, so a file or a generator runs at a camera's pace."""
    now = time.monotonic()
    source._next_t = max(source._next_t + source._interval_s, now - source._interval_s)
    delay = source._next_t - now
    if delay > 0:
        time.sleep(delay)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"camera size {text!r} must look like 320x240") from None
    if not (16 <= w <= 4096 and 16 <= h <= 4096):
        raise UserError(f"camera size {text!r} must be between 16x16 and 4096x4096")
    return w, h


def source_factory(uri: str) -> Callable[[], FrameSource]:
    """Parse a camera URI and return a function that makes a fresh source for it (one per connection).

    Args:
        uri: `v4l2:///dev/videoN`, `file://PATH` or
            `synthetic://[?size=WxH&fps=F&seed=S&garment=KIND&colour=RRGGBB]` (garment and colour: one plain
            garment held still in the middle of the frame).

    Returns:
        A zero-argument factory of FrameSource objects.

    Raises:
        UserError: an unknown scheme, a malformed URI, or a video file that does not exist.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in SCHEMES:
        raise UserError(
            f"camera URI {uri!r} is not understood; use v4l2:///dev/video0, file://clip.avi or synthetic://"
        )
    if scheme == "v4l2":
        device = urllib.parse.unquote(rest)
        if not device.startswith("/dev/"):
            raise UserError(f"camera URI {uri!r}: a V4L2 device is a path under /dev, e.g. v4l2:///dev/video0")
        return lambda: V4L2Source(device)
    if scheme == "file":
        path_text, _, query = rest.partition("?")
        path = Path(urllib.parse.unquote(path_text)).expanduser()
        if not path_text or not path.is_file():
            raise UserError(f"camera URI {uri!r}: video file {path} does not exist")
        params = _query(uri, query, {"fps"})
        fps = _float_param(uri, params, "fps", None)
        return lambda: FileSource(path.resolve(), fps=fps)
    # synthetic
    path_text, _, query = rest.partition("?")
    if path_text not in ("", "/"):
        raise UserError(f"camera URI {uri!r}: synthetic:// takes only "
                        "?size=WxH&fps=F&seed=S&garment=KIND&colour=RRGGBB")
    params = _query(uri, query, {"size", "fps", "seed", "garment", "colour"})
    width, height = _parse_size(params.get("size", "320x240"))
    fps = _float_param(uri, params, "fps", 15.0) or 15.0
    try:
        seed = int(params.get("seed", "0"))
    except ValueError:
        raise UserError(f"camera URI {uri!r}: seed must be an integer") from None
    garment, colour = _garment_params(uri, params)
    return lambda: SyntheticSource(width, height, fps, seed, garment, colour)


def _garment_params(uri: str, params: dict[str, str]) -> tuple[str | None, tuple[int, int, int] | None]:
    """synthetic://?garment=t-shirt&colour=c83232: one garment kind, plain in one RGB colour, held still."""
    from edge.procedural_garments import GARMENT_KINDS

    garment = params.get("garment")
    if garment is not None and garment not in GARMENT_KINDS:
        raise UserError(f"camera URI {uri!r}: garment must be one of {', '.join(GARMENT_KINDS)}")
    text = params.get("colour")
    if text is None:
        return garment, None
    if len(text) != 6 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise UserError(f"camera URI {uri!r}: colour must be six hex digits RRGGBB, e.g. c83232")
    colour = (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
    return garment or "t-shirt", colour


def _query(uri: str, query: str, allowed: set[str]) -> dict[str, str]:
    params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise UserError(f"camera URI {uri!r}: unknown parameter(s) {', '.join(unknown)}")
    return params


def _float_param(uri: str, params: dict[str, str], key: str, default: float | None) -> float | None:
    if key not in params:
        return default
    try:
        value = float(params[key])
    except ValueError:
        raise UserError(f"camera URI {uri!r}: {key} must be a number") from None
    if not 1.0 <= value <= 120.0:
        raise UserError(f"camera URI {uri!r}: {key} must be in 1..120")
    return value


@dataclass(frozen=True)
class Frame:
    """One camera frame as the kiosk keeps it."""

    seq: int  # increasing frame number (across reconnects)
    t: float  # time.monotonic() when it was read
    bgr: np.ndarray  # the frame as the camera gave it
    model_input: np.ndarray  # the frame through edge.kernels.preprocess_frame (the model-input crop)


class FrameMailbox:
    """One slot holding the newest frame; readers wait for a frame newer than the one they have."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None

    def put(self, frame: Frame) -> None:
        """Replace the slot's frame (the older one is dropped) and wake the waiters."""
        with self._cond:
            self._frame = frame
            self._cond.notify_all()

    def latest(self) -> Frame | None:
        """The newest frame, or None before the first."""
        with self._cond:
            return self._frame

    def wait_newer(self, after_seq: int, timeout_s: float) -> Frame | None:
        """Block until a frame with seq > after_seq arrives (returns it) or the timeout passes (None)."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._frame is not None and self._frame.seq > after_seq, timeout=timeout_s
            )
            return self._frame if ok else None


@dataclass(frozen=True)
class CameraStatus:
    """What /healthz reports about the camera."""

    uri: str
    state: str  # off | connecting | live | stalled | failed | stopped
    frames: int
    failures: int
    reconnects: int
    last_error: str | None
    last_frame_age_s: float | None


class CameraFeed:
    """Keeps one FrameSource running in the background and posts its frames to a mailbox.

    A supervisor thread opens a fresh source from the factory and starts a reader thread on it. When the
    reader fails (`read` raises or returns nothing) or stalls (no frame for `stall_timeout_s`), the supervisor
    abandons that connection and opens a new one after a back-off (doubling from `backoff_s` up to
    `max_backoff_s`, reset once frames flow again). A stalled reader is never closed from another thread
    (OpenCV captures are not thread-safe): it closes its own source whenever its blocked `read` returns.

    Args:
        factory: makes a new FrameSource per connection (see `source_factory`).
        preprocess: applied to every frame (edge.kernels.preprocess_frame bound to the model size).
        uri: the URI shown in status.
        stall_timeout_s: a connection with no frame for this long is abandoned.
        on_reconnect: called after each successful reconnect (metrics).
        on_frame: called after each frame (metrics).
    """

    def __init__(
        self,
        factory: Callable[[], FrameSource],
        preprocess: Callable[[np.ndarray], np.ndarray],
        *,
        uri: str,
        stall_timeout_s: float = 3.0,
        backoff_s: float = 0.25,
        max_backoff_s: float = 8.0,
        on_reconnect: Callable[[], None] | None = None,
        on_frame: Callable[[], None] | None = None,
    ) -> None:
        self.mailbox = FrameMailbox()
        self._factory = factory
        self._preprocess = preprocess
        self._uri = uri
        self._stall_timeout_s = stall_timeout_s
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._on_reconnect = on_reconnect or (lambda: None)
        self._on_frame = on_frame or (lambda: None)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._generation = 0  # connection number; a reader whose number is stale stops
        self._seq = 0
        self._state = "connecting"
        self._frames = self._failures = self._reconnects = 0
        self._last_error: str | None = None
        self._last_frame_t: float | None = None
        self._conn_frame_t = 0.0  # last frame (or open) time of the current connection
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the supervisor thread (returns at once; the first frame comes later)."""
        self._thread = threading.Thread(target=self._supervise, name="camera-feed", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the supervisor; a reader blocked in a wedged driver is left to end on its own (daemon)."""
        self._stop.set()
        with self._lock:
            self._generation += 1
            self._state = "stopped"
        if self._thread is not None:
            self._thread.join(timeout_s)

    def status(self) -> CameraStatus:
        """A snapshot of the feed's state and counters."""
        with self._lock:
            age = None if self._last_frame_t is None else time.monotonic() - self._last_frame_t
            return CameraStatus(self._uri, self._state, self._frames, self._failures, self._reconnects,
                                self._last_error, age)

    def _fail(self, message: str) -> None:
        with self._lock:
            self._failures += 1
            self._last_error = message
            self._state = "stalled" if "stalled" in message else "failed"
        log.warning("event=camera_failure uri=%s error=%r", self._uri, message)

    def _supervise(self) -> None:
        backoff_s = self._backoff_s
        failed_before = False
        while not self._stop.is_set():
            with self._lock:
                self._state = "connecting"
            source = self._factory()
            try:
                source.open()
            except Exception as exc:  # a driver can raise anything; the feed must outlive it
                self._fail(f"open failed: {exc}")
                _close_quietly(source)
                failed_before = True
                self._stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, self._max_backoff_s)
                continue
            with self._lock:
                self._generation += 1
                generation = self._generation
                self._conn_frame_t = time.monotonic()
                frames_before = self._frames
                if failed_before:
                    self._reconnects += 1
            if failed_before:
                log.info("event=camera_reconnected uri=%s", self._uri)
                self._on_reconnect()
            error: list[str] = []
            reader = threading.Thread(target=self._read_loop, args=(source, generation, error),
                                      name=f"camera-reader-{generation}", daemon=True)
            reader.start()
            while not self._stop.is_set():
                reader.join(0.05)
                if self._stop.is_set():
                    break
                if not reader.is_alive():
                    self._fail(error[0] if error else "source stopped delivering frames")
                    break
                with self._lock:
                    idle_s = time.monotonic() - self._conn_frame_t
                if idle_s > self._stall_timeout_s:
                    with self._lock:
                        self._generation += 1  # abandon: the reader closes its source when read returns
                    self._fail(f"stalled: no frame for {idle_s:.1f} s")
                    break
            if self._stop.is_set():
                break
            failed_before = True
            with self._lock:
                if self._frames > frames_before:  # frames flowed on that connection: start over gently
                    backoff_s = self._backoff_s
            self._stop.wait(backoff_s)
            backoff_s = min(backoff_s * 2, self._max_backoff_s)
        with self._lock:
            self._state = "stopped"

    def _read_loop(self, source: FrameSource, generation: int, error: list[str]) -> None:
        try:
            while True:
                with self._lock:
                    if generation != self._generation:
                        return
                bgr = source.read()
                if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
                    raise CameraError("source returned no frame or not a colour frame")
                model_input = self._preprocess(bgr)
                now = time.monotonic()
                with self._lock:
                    if generation != self._generation:
                        return
                    self._seq += 1
                    self._frames += 1
                    self._last_frame_t = self._conn_frame_t = now
                    self._state = "live"
                    frame = Frame(self._seq, now, bgr, model_input)
                self.mailbox.put(frame)
                self._on_frame()
        except Exception as exc:  # report whatever the source raised; the supervisor reconnects
            error.append(f"{type(exc).__name__}: {exc}")
        finally:
            _close_quietly(source)


def _close_quietly(source: FrameSource) -> None:
    try:
        source.close()
    except Exception:  # closing a broken device may fail too; nothing more to do about it
        log.debug("closing %s failed", source.uri, exc_info=True)

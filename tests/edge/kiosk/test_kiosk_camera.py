"""Camera sources by URI, the newest-frame mailbox, and a feed that survives a source that fails or stalls."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import UserError
from edge.kernels import preprocess_frame
from edge.kiosk.camera import (
    CameraError,
    CameraFeed,
    FileSource,
    Frame,
    FrameMailbox,
    FrameSource,
    SyntheticSource,
    V4L2Source,
    source_factory,
)
from edge.procedural_garments import GARMENT_KINDS, render_garment

SIZE_PX = 32


def _preprocess(bgr: np.ndarray) -> np.ndarray:
    return preprocess_frame(bgr, SIZE_PX, crop="center", out="float")


def _wait_for(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def garment_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-frame MJPG .avi of procedural garments (80x60), made with OpenCV's own writer."""
    path = tmp_path_factory.mktemp("video") / "garments.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (80, 60))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for i in range(12):
        frame = np.full((60, 80, 3), 40 + 15 * i, np.uint8)
        frame[5:55, 15:65] = render_garment(GARMENT_KINDS[i % 3], 50, rng)[:, :, ::-1]
        writer.write(frame)
    writer.release()
    return path


@pytest.mark.parametrize(
    ("uri", "complaint"),
    [
        ("rtsp://camera/stream", "not understood"),
        ("/dev/video0", "not understood"),
        ("v4l2://video0", "path under /dev"),
        ("v4l2:///etc/passwd", "path under /dev"),
        ("file:///nonexistent/clip.avi", "does not exist"),
        ("file://", "does not exist"),
        ("synthetic://?size=10x10", "between 16x16"),
        ("synthetic://?size=big", "must look like 320x240"),
        ("synthetic://?fps=0", "fps must be in 1..120"),
        ("synthetic://?flavour=red", "unknown parameter(s) flavour"),
        ("synthetic://?colour=red", "six hex digits"),
        ("synthetic://?garment=hat", "garment must be one of"),
        ("synthetic://elsewhere", "takes only"),
        ("synthetic://?seed=x", "seed must be an integer"),
    ],
)
def test_bad_camera_uris_are_refused(uri: str, complaint: str) -> None:
    with pytest.raises(UserError) as excinfo:
        source_factory(uri)
    assert complaint in str(excinfo.value)


def test_uris_make_the_right_sources(garment_video: Path) -> None:
    assert isinstance(source_factory("v4l2:///dev/video0")(), V4L2Source)
    assert isinstance(source_factory(f"file://{garment_video}")(), FileSource)
    synthetic = source_factory("synthetic://?size=64x48&fps=30&seed=3")()
    assert isinstance(synthetic, SyntheticSource)
    assert (synthetic.width, synthetic.height, synthetic.seed) == (64, 48, 3)


def test_synthetic_frames_move_and_repeat_for_a_seed() -> None:
    def frames(seed: int) -> list[np.ndarray]:
        source = SyntheticSource(96, 64, fps=120.0, seed=seed)
        source.open()
        out = [source.read() for _ in range(6)]
        source.close()
        return out

    first = frames(1)
    assert all(f.shape == (64, 96, 3) and f.dtype == np.uint8 for f in first)
    assert not np.array_equal(first[0], first[3])  # the garment slides: the preview visibly changes
    assert all(np.array_equal(a, b) for a, b in zip(first, frames(1), strict=True))
    assert not np.array_equal(first[0], frames(2)[0])


def test_a_video_file_loops(garment_video: Path) -> None:
    source = FileSource(garment_video, fps=120.0)
    source.open()
    frames = [source.read() for _ in range(30)]
    source.close()
    assert all(f.shape == (60, 80, 3) for f in frames)
    # 12 frames in the file: frame 12 is frame 0 again (same JPEG, same decoder, same pixels).
    assert np.array_equal(frames[0], frames[12]) and np.array_equal(frames[5], frames[29])
    assert not np.array_equal(frames[0], frames[6])


def test_a_missing_v4l2_device_is_a_camera_error() -> None:
    with pytest.raises(CameraError, match="does not exist"):
        V4L2Source("/dev/atelier-no-such-camera").open()


def test_the_mailbox_keeps_only_the_newest_frame() -> None:
    box = FrameMailbox()
    assert box.latest() is None and box.wait_newer(0, 0.01) is None
    blank = np.zeros((4, 4, 3), np.uint8)
    for seq in (1, 2, 3):
        box.put(Frame(seq, 0.0, blank, blank))
    latest = box.latest()
    assert latest is not None and latest.seq == 3
    assert box.wait_newer(3, 0.01) is None
    threading.Timer(0.05, lambda: box.put(Frame(4, 0.0, blank, blank))).start()
    newer = box.wait_newer(3, 5.0)
    assert newer is not None and newer.seq == 4


class ScriptedCamera(FrameSource):
    """A camera whose driver misbehaves on cue (hardware we lack): each connection follows one script step.

    Steps: ("frames", n, then) delivers n frames then `then` ("raise" or "stall"); ("open-fails",);
    ("frames", None, None) delivers frames forever.
    """

    connections = 0
    lock = threading.Lock()

    def __init__(self, script: list[tuple], release: threading.Event) -> None:
        with ScriptedCamera.lock:
            self.step = script[min(ScriptedCamera.connections, len(script) - 1)]
            ScriptedCamera.connections += 1
        self.uri = "scripted://"
        self.release = release
        self.sent = 0
        self.rng = np.random.default_rng(ScriptedCamera.connections)

    def open(self) -> None:
        if self.step[0] == "open-fails":
            raise CameraError("device busy")

    def read(self) -> np.ndarray:
        _, count, then = self.step
        if count is not None and self.sent >= count:
            if then == "raise":
                raise CameraError("USB read error")
            self.release.wait(60.0)  # a wedged driver: read() blocks until the test lets go
            raise CameraError("released")
        self.sent += 1
        time.sleep(0.01)
        return self.rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)

    def close(self) -> None:
        pass


def scripted_feed(script: list[tuple], release: threading.Event, reconnects: list[int]) -> CameraFeed:
    ScriptedCamera.connections = 0
    return CameraFeed(lambda: ScriptedCamera(script, release), _preprocess, uri="scripted://",
                      stall_timeout_s=0.5, backoff_s=0.05, max_backoff_s=0.2,
                      on_reconnect=lambda: reconnects.append(1))


def test_the_feed_reconnects_after_errors_failed_opens_and_stalls() -> None:
    release = threading.Event()
    reconnects: list[int] = []
    script = [("frames", 3, "raise"), ("open-fails",), ("frames", 2, "stall"), ("frames", None, None)]
    feed = scripted_feed(script, release, reconnects)
    feed.start()
    try:
        _wait_for(lambda: ScriptedCamera.connections >= 4 and feed.status().frames >= 10)
        status = feed.status()
        assert status.state == "live"
        assert status.failures == 3  # the read error, the failed open, the stall
        assert status.reconnects == 2 == len(reconnects)  # reopened after the error and after the stall
        assert status.last_error is not None and "stalled" in status.last_error
        frame = feed.mailbox.latest()
        assert frame is not None
        assert frame.model_input.shape == (SIZE_PX, SIZE_PX, 3)
        assert np.array_equal(frame.model_input, _preprocess(frame.bgr))
    finally:
        feed.stop()
        release.set()
    assert feed.status().state == "stopped"


def test_a_camera_that_never_opens_keeps_being_retried() -> None:
    feed = CameraFeed(source_factory("v4l2:///dev/atelier-no-such-camera"), _preprocess,
                      uri="v4l2:///dev/atelier-no-such-camera", backoff_s=0.02, max_backoff_s=0.05)
    feed.start()
    try:
        _wait_for(lambda: feed.status().failures >= 3)
        status = feed.status()
        assert status.frames == 0 and status.reconnects == 0
        assert status.last_error is not None and "does not exist" in status.last_error
    finally:
        feed.stop()

"""The capture pipeline: quality gate and dedupe refuse bad frames with their reasons; faces are blurred before
anything is written.

The face is a real photograph: Grace Hopper's official U.S. Navy portrait (public domain), which matplotlib ships
as sample data (`matplotlib.cbook.get_sample_data("grace_hopper.jpg")`); it is read from the installed package,
never copied into the repository.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.capture.faces import FaceBlurrer
from edge.capture.pipeline import CapturePipeline, CaptureRejected, CaptureSettings
from edge.capture.scenes import garment_scene, paste
from edge.capture.store import CaptureStore


def scene(seed: int, kind: str = "dress") -> np.ndarray:
    return garment_scene(kind, np.random.default_rng(seed))


def grace_hopper() -> np.ndarray:
    from matplotlib import cbook

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def laplacian_var(gray: np.ndarray) -> float:
    return float(cv2.Laplacian(gray.astype(np.float64), cv2.CV_64F).var())


class RecordingStore(CaptureStore):
    """The real store, remembering every frame handed to its writer (to prove only blurred pixels reach it)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.frames: list[np.ndarray] = []

    def add_frame(self, bgr, **kwargs):
        self.frames.append(bgr.copy())
        return super().add_frame(bgr, **kwargs)


@pytest.fixture()
def store(tmp_path: Path):
    with RecordingStore(tmp_path / "store", min_free_bytes=0) as s:
        yield s


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".jpg", ".part"))


def test_blurry_dark_overexposed_and_duplicate_frames_are_refused_with_reasons(store: RecordingStore) -> None:
    pipeline = CapturePipeline(store)
    first = scene(1)
    record = pipeline.capture(first, "dress")
    assert record.class_name == "dress" and record.sharpness > pipeline.settings.min_sharpness
    bad = {
        "blurry": cv2.GaussianBlur(scene(2), (0, 0), 4),
        "too_dark": (scene(3) * 0.12).astype(np.uint8),
        "over_exposed": np.clip(scene(4).astype(np.int16) + 170, 0, 255).astype(np.uint8),
        "duplicate": first,
    }
    noisy = np.clip(first.astype(np.int16) + np.random.default_rng(0).integers(-6, 7, first.shape), 0, 255)
    bad["duplicate_noisy"] = noisy.astype(np.uint8)
    messages = {}
    for name, frame in bad.items():
        with pytest.raises(CaptureRejected) as info:
            pipeline.capture(frame, "dress")
        assert info.value.reason == name.removesuffix("_noisy")
        messages[name] = str(info.value)
    assert "hold the garment still" in messages["blurry"]
    assert "add light" in messages["too_dark"]
    assert "reduce the light" in messages["over_exposed"]
    assert record.id in messages["duplicate"] and record.id in messages["duplicate_noisy"]
    assert len(store) == 1 and len(store.frames) == 1  # nothing refused reached the writer
    assert len(_files(store.root)) == 1
    assert pipeline.capture(scene(5, "trousers"), "trousers").class_name == "trousers"


def test_thresholds_are_configurable_and_dedupe_survives_a_restart(tmp_path: Path) -> None:
    blurry = cv2.GaussianBlur(scene(2), (0, 0), 4)
    with CaptureStore(tmp_path / "s", min_free_bytes=0) as store:
        lenient = CapturePipeline(store, CaptureSettings(min_sharpness=0.0, face_blur=False))
        stored = lenient.capture(blurry, "dress")
        assert stored.sharpness < CaptureSettings().min_sharpness
    with CaptureStore(tmp_path / "s", min_free_bytes=0) as store:  # a new kiosk process on the same store
        pipeline = CapturePipeline(store, CaptureSettings(min_sharpness=0.0, face_blur=False))
        with pytest.raises(CaptureRejected, match=stored.id):
            pipeline.capture(blurry, "dress")
        off = CapturePipeline(store, CaptureSettings(min_sharpness=0.0, face_blur=False, duplicate_max_bits=-1))
        assert off.capture(blurry, "dress").id != stored.id
    with pytest.raises(Exception, match="capture_min_mean_luma"):
        CaptureSettings(min_mean_luma=200, max_mean_luma=100).validate()


def test_bad_frames_and_classes_are_refused(store: RecordingStore) -> None:
    pipeline = CapturePipeline(store)
    for frame in (np.zeros((8, 8, 3), np.uint8), np.zeros((100, 100), np.uint8), np.zeros((64, 64, 3), np.float32)):
        with pytest.raises(CaptureRejected) as info:
            pipeline.capture(frame, "dress")
        assert info.value.reason == "bad_frame"
    for name in ("", "../../../etc/passwd", "x" * 100):
        with pytest.raises(CaptureRejected) as info:
            pipeline.capture(scene(7), name)
        assert info.value.reason == "bad_class"
    assert len(store) == 0 and _files(store.root) == []


def _face_scene() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A 1080p scene with a garment and Grace Hopper's portrait; returns the frame and her face box."""
    frame = scene(11, "t-shirt")
    paste(frame, grace_hopper(), 60, 200, 700)
    faces = FaceBlurrer().detect(frame)
    assert len(faces) == 1, "the Haar cascade should find the portrait's face"
    f = faces[0]
    return frame, (f.x, f.y, f.w, f.h)


def _region(image: np.ndarray, box: tuple[int, int, int, int], scale: float) -> np.ndarray:
    x, y, w, h = (round(v * scale) for v in box)
    return cv2.cvtColor(image[y : y + h, x : x + w], cv2.COLOR_BGR2GRAY)


def test_a_face_is_stored_blurred_and_no_unblurred_pixels_reach_the_disk(store: RecordingStore) -> None:
    frame, face = _face_scene()
    original = frame.copy()
    record = CapturePipeline(store).capture(frame, "t-shirt")
    np.testing.assert_array_equal(frame, original)  # the camera's frame is never modified
    assert record.faces_blurred == 1
    stored = cv2.imread(str(store.image_path(record)), cv2.IMREAD_COLOR)
    scale = stored.shape[1] / frame.shape[1]  # stored at max_side_px (1280) on the long side
    assert max(stored.shape[:2]) == CaptureSettings().max_side_px
    reference = cv2.resize(original, (stored.shape[1], stored.shape[0]), interpolation=cv2.INTER_AREA)
    face_before = laplacian_var(_region(reference, face, scale))
    face_after = laplacian_var(_region(stored, face, scale))
    assert face_after < face_before / 20, (face_before, face_after)
    # The rest of the picture (the garment) keeps its detail.
    garment = (1000, 150, 700, 780)
    assert laplacian_var(_region(stored, garment, scale)) > 0.5 * laplacian_var(_region(reference, garment, scale))
    # Only the blurred copy reached the writer ...
    (handed,) = store.frames
    assert laplacian_var(_region(handed, face, scale)) < face_before / 20
    # ... and no file anywhere in the store holds the face unblurred.
    for path in _files(store.root):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert laplacian_var(_region(img, face, img.shape[1] / frame.shape[1])) < face_before / 20


def test_with_face_blur_off_the_face_is_kept_so_the_measure_can_tell(tmp_path: Path) -> None:
    frame, face = _face_scene()
    with CaptureStore(tmp_path / "s", min_free_bytes=0) as store:
        record = CapturePipeline(store, CaptureSettings(face_blur=False)).capture(frame, "t-shirt")
        stored = cv2.imread(str(store.image_path(record)), cv2.IMREAD_COLOR)
    scale = stored.shape[1] / frame.shape[1]
    reference = cv2.resize(frame, (stored.shape[1], stored.shape[0]), interpolation=cv2.INTER_AREA)
    assert record.faces_blurred == 0
    before = laplacian_var(_region(reference, face, scale))
    assert laplacian_var(_region(stored, face, scale)) > 0.5 * before


def test_cli_add_runs_photo_files_through_the_pipeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from atelier.cli import main as atelier_main

    good, blurry, junk = tmp_path / "good.png", tmp_path / "blurry.png", tmp_path / "notes.jpg"
    cv2.imwrite(str(good), scene(31))
    cv2.imwrite(str(blurry), cv2.GaussianBlur(scene(32), (0, 0), 4))
    junk.write_text("not a photo")
    store = tmp_path / "store"
    args = ["capture", "add", str(store), "--class", "dress"]
    assert atelier_main([*args, str(good), str(blurry), str(junk)]) == 0
    out = capsys.readouterr().out
    assert "good.png: stored as" in out and "blurry.png: refused (blurry)" in out
    assert "notes.jpg: refused: not a readable image" in out
    assert atelier_main([*args, str(good)]) == 2  # the same photo again: a duplicate, nothing stored
    with CaptureStore(store, writable=False) as s:
        (record,) = s.records()
    assert record.source == "cli" and record.class_name == "dress"

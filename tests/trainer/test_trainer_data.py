"""The training-data scan: every bad file is skipped with its reason, odd-but-usable files are converted."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.errors import UserError
from edge.procedural_garments import render_garment
from trainer.dataset import load_training_data, make_dataset, steps_per_epoch
from trainer.image_files import MAX_PIXELS, load_training_image


def _garment(seed: int, size: int = 64) -> np.ndarray:
    return render_garment("t-shirt", size, np.random.default_rng(seed))


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height, with no pixel data: decoding it would fail or explode."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


@pytest.fixture()
def messy_dir(tmp_path: Path) -> Path:
    """A class folder with good files, every kind of bad file, and files that need converting."""
    folder = tmp_path / "data" / "t-shirt"
    folder.mkdir(parents=True)
    Image.fromarray(_garment(1)).save(folder / "good.jpg", quality=92)
    Image.fromarray(_garment(2)).save(folder / "good.png")
    Image.fromarray(_garment(3)).save(folder / "good.webp")
    (folder / "empty.jpg").write_bytes(b"")
    full = (folder / "good.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (folder / "notes.jpg").write_text("this is not a picture")
    (folder / "readme.txt").write_text("hello")
    Image.fromarray(_garment(4)).convert("CMYK").save(folder / "cmyk.jpg")
    sixteen = (_garment(5)[..., 0].astype(np.uint16) * 257)
    Image.fromarray(sixteen).save(folder / "sixteen.png")  # mode I;16
    Image.fromarray(_garment(6)).convert("L").save(folder / "gray.png")
    rgba = np.dstack([_garment(7), np.full((64, 64), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    Image.fromarray(_garment(8)).convert("P").save(folder / "palette.png")
    Image.fromarray(_garment(9, size=16)).save(folder / "small.png")
    _png_header_only(folder / "bomb.png", 10_000, 10_000)
    return tmp_path / "data"


def test_scan_skips_bad_files_with_reasons_and_converts_odd_ones(messy_dir: Path) -> None:
    data = load_training_data(messy_dir, 32, progress=False)
    reasons = {Path(s["path"]).name: s["reason"] for s in data.report.skipped}
    assert set(reasons) == {"empty.jpg", "truncated.jpg", "notes.jpg", "readme.txt", "small.png", "bomb.png"}
    assert "empty" in reasons["empty.jpg"]
    assert "truncated" in reasons["truncated.jpg"] or "corrupt" in reasons["truncated.jpg"]
    assert "not an image" in reasons["notes.jpg"]
    assert "not a supported image type (.txt" in reasons["readme.txt"]
    assert "too small: 16x16" in reasons["small.png"]
    assert "too large" in reasons["bomb.png"] and "without decoding" in reasons["bomb.png"]
    converted = {Path(c["path"]).name: c["from"] for c in data.report.converted}
    assert converted == {"cmyk.jpg": "CMYK", "sixteen.png": "I;16", "gray.png": "L", "alpha.png": "RGBA",
                         "palette.png": "P"}
    assert data.report.n_files == 14 and data.report.n_used == 8
    assert data.images.shape == (8, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.class_names == ["t-shirt"] and data.labels.tolist() == [0] * 8


def test_sixteen_bit_and_alpha_keep_their_content(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    out = load_training_image(tmp_path / "ramp.png", 64).pixels
    assert out[0, 0, 0] < 5 and out[0, -1, 0] > 250  # full 16-bit range mapped onto 0..255, not clipped
    rgba = np.zeros((64, 64, 4), np.uint8)  # fully transparent black -> white backdrop
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    assert load_training_image(tmp_path / "clear.png", 32).pixels.min() == 255


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Left half red, right half blue; EXIF orientation 6 says "rotate 90° clockwise to display".
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, :32] = (255, 0, 0)
    img[:, 32:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(img).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    out = load_training_image(tmp_path / "rotated.jpg", 32, crop="pad").pixels.astype(int)
    # After rotating clockwise, red is on top and blue at the bottom.
    assert out[4, 16, 0] > 200 and out[4, 16, 2] < 60
    assert out[-5, 16, 2] > 200 and out[-5, 16, 0] < 60


def test_pad_keeps_the_whole_garment_and_centre_crops_it(tmp_path: Path) -> None:
    wide = np.zeros((40, 80, 3), np.uint8)  # black, wider than tall
    Image.fromarray(wide).save(tmp_path / "wide.png")
    padded = load_training_image(tmp_path / "wide.png", 40, crop="pad").pixels
    cropped = load_training_image(tmp_path / "wide.png", 40, crop="center").pixels
    assert padded[0].min() == 255 and padded[20].max() == 0  # white bars above, black band in the middle
    assert cropped.max() == 0


def test_bomb_guard_is_at_the_documented_limit(tmp_path: Path) -> None:
    _png_header_only(tmp_path / "big.png", MAX_PIXELS // 1000 + 1, 1000)
    with pytest.raises(Exception, match="too large"):
        load_training_image(tmp_path / "big.png", 32)


def test_empty_missing_and_all_bad_folders_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_training_data(tmp_path / "nope", 32, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no files in .*empty"):
        load_training_data(tmp_path / "empty", 32, progress=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"")
    (bad / "b.png").write_text("nope")
    with pytest.raises(UserError, match=r"none of the 2 files in .*bad is a usable image"):
        load_training_data(bad, 32, progress=False)
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match="is a file"):
        load_training_data(tmp_path / "file.jpg", 32, progress=False)


def test_layouts_and_class_filter(garment_dir: Path, tmp_path: Path) -> None:
    data = load_training_data(garment_dir, 32, classes=["dress", "trousers"], progress=False)
    assert data.class_names == ["dress", "trousers"] and len(data.images) == 48
    assert sorted(set(data.labels.tolist())) == [0, 1]
    with pytest.raises(UserError, match=r"--classes skirt not found.*available: dress, t-shirt, trousers"):
        load_training_data(garment_dir, 32, classes=["skirt"], progress=False)
    flat = load_training_data(garment_dir / "dress", 32, progress=False)
    assert flat.class_names == ["dress"] and len(flat.images) == 24
    root = tmp_path / "dataset"
    root.mkdir()
    (root / "train").symlink_to(garment_dir, target_is_directory=True)
    assert load_training_data(root, 32, progress=False).class_names == ["dress", "t-shirt", "trousers"]


def test_batches_depend_only_on_seed_and_step(garment_dir: Path) -> None:
    data = load_training_data(garment_dir, 32, progress=False)
    spe = steps_per_epoch(len(data.images), 16)
    whole = [x.numpy() for x, _ in make_dataset(data, 16, seed=5, start_step=0, end_step=2 * spe)]
    tail = [x.numpy() for x, _ in make_dataset(data, 16, seed=5, start_step=spe + 1, end_step=2 * spe)]
    for a, b in zip(whole[spe + 1:], tail, strict=True):
        np.testing.assert_array_equal(a, b)
    assert whole[0].min() >= -1.0 and whole[0].max() <= 1.0 and whole[0].shape == (16, 32, 32, 3)
    # Two epochs see different orders; one epoch sees every image at most once.
    def photos(batches: list[np.ndarray]) -> list[bytes]:  # which photo, whether or not it was flipped
        return [min(x.tobytes(), x[:, ::-1].tobytes()) for x in np.concatenate(batches)]

    first_epoch, second_epoch = photos(whole[:spe]), photos(whole[spe:2 * spe])
    assert len(set(first_epoch)) == len(first_epoch) and len(set(second_epoch)) == len(second_epoch)
    assert len(set(first_epoch) & set(second_epoch)) >= len(first_epoch) // 2  # largely the same photos...
    assert first_epoch != second_epoch  # ...in another order
    other = [x.numpy() for x, _ in make_dataset(data, 16, seed=6, start_step=0, end_step=1)]
    assert not np.array_equal(other[0], whole[0])

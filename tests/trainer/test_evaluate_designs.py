"""`atelier evaluate --designs DIR|NPZ`: any image set scored like a model's designs; bad image sets refused or
reported, never a traceback; the realism numbers in evaluation.json and the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atelier.cli import main
from edge.errors import UserError
from edge.procedural_garments import render_garment
from trainer import evaluate as ev
from trainer import realism


def _garments(n: int, size: int, seed: int = 11) -> np.ndarray:
    rng = np.random.default_rng(seed)
    kinds = ("t-shirt", "dress", "trousers")
    return np.stack([render_garment(kinds[i % 3], size, rng) for i in range(n)])


def test_a_folder_of_images_with_bad_files_is_scored_and_the_bad_ones_reported(garment_dir: Path,
                                                                                 tmp_path: Path) -> None:
    folder = tmp_path / "designs"
    folder.mkdir()
    for i, img in enumerate(_garments(20, 48)):
        Image.fromarray(img).save(folder / f"d{i:02d}.png")
    Image.fromarray(_garments(1, 96)[0]).save(folder / "bigger.png")  # another size: resized, counted
    Image.fromarray(_garments(1, 48)[0]).convert("L").save(folder / "gray.png")  # grayscale: converted, counted
    Image.new("RGB", (1, 1)).save(folder / "dot.png")  # 1 x 1: skipped with its reason
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # corrupt: skipped
    (folder / "notes.txt").write_text("not an image")  # not an image type: skipped
    result = ev.evaluate(None, garment_dir, ev.EvalOptions(novelty=False), designs_path=folder,
                         out_dir=tmp_path / "out")
    model = result["model"]
    assert model["kind"] == "images" and model["size_px"] == 48
    assert model["used"] == 22 and model["resized"] == 1 and model["converted_to_rgb"] == 1
    reasons = {Path(s["path"]).name: s["reason"] for s in model["skipped"]}
    assert set(reasons) == {"dot.png", "corrupt.png", "notes.txt"}
    assert "too small" in reasons["dot.png"]
    saved = json.loads((tmp_path / "out" / ev.EVALUATION_FILE).read_text())
    assert saved["model"]["skipped_count"] == 3
    for key in ("two_sample", "spectrum", "diversity", "rows_128"):
        assert saved[key] is not None, key
    assert 0.0 <= saved["two_sample"]["accuracy"] <= 1.0


def test_blocky_copies_score_worse_than_the_pictures_themselves(garment_dir: Path, tmp_path: Path) -> None:
    """Procedural garments like the reference's, then blocky copies of them."""
    sharp = _garments(30, 48, seed=7)
    np.savez(tmp_path / "sharp.npz", images=sharp)
    np.savez(tmp_path / "blocky.npz", images=realism.blocky(sharp, 12))
    good = ev.evaluate(None, garment_dir, ev.EvalOptions(novelty=False), designs_path=tmp_path / "sharp.npz")
    bad = ev.evaluate(None, garment_dir, ev.EvalOptions(novelty=False), designs_path=tmp_path / "blocky.npz")
    assert (tmp_path / "sharp-evaluation" / ev.EVALUATION_FILE).is_file()  # default out: NAME-evaluation beside it
    assert bad["spectrum"]["spectrum_distance_db"] > good["spectrum"]["spectrum_distance_db"] + 3
    assert bad["two_sample"]["accuracy"] > good["two_sample"]["accuracy"]
    assert bad["rows_128"]["designs"]["kid"]["value"] > good["rows_128"]["designs"]["kid"]["value"]


def test_npz_grayscale_and_sizes(garment_dir: Path, tmp_path: Path) -> None:
    gray = _garments(12, 64)[..., 0]
    np.savez(tmp_path / "gray.npz", images=gray)
    result = ev.evaluate(None, garment_dir, ev.EvalOptions(novelty=False), designs_path=tmp_path / "gray.npz",
                         size_px=48, out_dir=tmp_path / "o")
    assert result["model"]["converted_to_rgb"] == 12 and result["model"]["resized"] == 12
    assert result["data"]["size_px"] == 48


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p.mkdir(), "empty folder"),
    (lambda p: (p.mkdir(), (p / "a.png").write_bytes(b"junk")), "none of its 1 files"),
    (lambda p: p.write_text("x"), r"not a \.npz"),
    (lambda p: None, "does not exist"),
])
def test_bad_image_sets_are_refused(garment_dir: Path, tmp_path: Path, make, message: str) -> None:
    target = tmp_path / "bad"
    make(target)
    with pytest.raises(UserError, match=message):
        ev.evaluate(None, garment_dir, ev.EvalOptions(), designs_path=target, out_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("array", "message"), [
    (np.zeros((10, 32, 32, 3), np.float32), "float32"),
    (np.zeros((10, 32), np.uint8), "shape"),
    (np.zeros((2, 32, 32, 3), np.uint8), "only 2 usable"),
    (np.zeros((10, 1, 1, 3), np.uint8), "too small"),
])
def test_bad_npz_arrays_are_refused(garment_dir: Path, tmp_path: Path, array: np.ndarray, message: str) -> None:
    np.savez(tmp_path / "x.npz", images=array)
    with pytest.raises(UserError, match=message):
        ev.evaluate(None, garment_dir, ev.EvalOptions(), designs_path=tmp_path / "x.npz", out_dir=tmp_path / "o")


def test_a_damaged_npz_is_a_clear_error(garment_dir: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", images=_garments(8, 32))
    data = (tmp_path / "x.npz").read_bytes()
    (tmp_path / "x.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"not a readable \.npz"):
        ev.evaluate(None, garment_dir, ev.EvalOptions(), designs_path=tmp_path / "x.npz")


@pytest.mark.parametrize(("argv", "message"), [
    ([], "name a run folder or a bundle"),
    (["MODEL", "--designs", "D"], "not both"),
    (["--designs", "D", "--record"], "--record writes a bundle"),
    (["MODEL", "--size", "64"], "--size applies to --designs"),
])
def test_cli_refuses_mixed_arguments(tiny_run: Path, garment_dir: Path, tmp_path: Path, argv: list[str],
                                     message: str, caplog) -> None:
    argv = [str(tiny_run) if a == "MODEL" else str(tmp_path) if a == "D" else a for a in argv]
    code = main(["evaluate", *argv, "--data", str(garment_dir), "--out", str(tmp_path / "o")])
    assert code == 2
    assert message in caplog.text


def test_cli_prints_the_realism_lines(garment_dir: Path, tmp_path: Path, capsys) -> None:
    np.savez(tmp_path / "d.npz", images=_garments(16, 48))
    code = main(["evaluate", "--designs", str(tmp_path / "d.npz"), "--data", str(garment_dir), "--classes",
                 "t-shirt,dress,trousers", "--out", str(tmp_path / "o")])
    assert code == 0
    text = capsys.readouterr().out
    assert "two-sample test" in text and "grid peak" in text and "near-duplicates" in text
    assert "128 px feature network" in text

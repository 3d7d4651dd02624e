"""`atelier report` on a real 3-epoch tiny run: the epoch table, the plot, the grids, and refusals."""

import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from atelier.cli import main
from edge.errors import UserError
from trainer.report import training_progress, write_report

N = 32


@pytest.fixture(scope="module")
def three_epoch_run(tmp_path_factory: pytest.TempPathFactory, garment_dir: Path) -> Path:
    """A 3-epoch tiny run with the default kept epochs (1, 10, 50, 100 and the last: here 1 and 3)."""
    from trainer.config import preset
    from trainer.train import train

    out = tmp_path_factory.mktemp("runs") / "three"
    train(preset("tiny", size_px=32, epochs=3, data_dir=str(garment_dir), seed=4), out, progress=False,
          command=["pytest"])
    return out


@pytest.fixture(scope="module")
def report(three_epoch_run: Path) -> dict:
    paths = write_report(three_epoch_run, n=N, seed=1)
    return {"paths": paths, "json": json.loads(paths["json"].read_text())}


def test_one_row_per_kept_epoch(report: dict, three_epoch_run: Path):
    rows = report["json"]["epochs"]
    assert [r["epoch"] for r in rows] == [1, 3]
    logged = {}
    for line in (three_epoch_run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        logged[row["epoch"]] = row
    for row in rows:
        assert (row["size_px"], row["z_dim"], row["batch_size"]) == (32, 16, 16)
        assert row["img_per_s"] == logged[row["epoch"]]["img_per_s"]
        for key in ("fcd", "kid", "precision", "recall"):
            assert row["metrics"][key]["spread"] >= 0
        assert row["metrics"]["n"] == N
    assert 0 < rows[0]["wall_s"] < rows[1]["wall_s"]
    assert report["json"]["floor"]["n"] == 15


def test_markdown_and_html_show_the_table_and_existing_pictures(report: dict):
    out = report["paths"]["markdown"].parent
    md = report["paths"]["markdown"].read_text()
    assert "| epoch | image size | noise size | batch size | img/s |" in md
    assert "held-out photos (floor)" in md
    page = report["paths"]["html"].read_text()
    assert page.count("<tr>") >= 3  # header + two epochs (the floor row has a class)
    for text, pattern in ((md, r"!\[[^\]]*\]\(([^)]+)\)"), (page, r'src="([^"]+)"')):
        links = re.findall(pattern, text)
        assert "metrics.png" in links
        assert "samples/epoch-0001.png" in links and "samples/epoch-0003.png" in links
        for link in links:
            assert (out / link).is_file(), link


def test_sample_grids_are_six_by_six(report: dict):
    out = report["paths"]["markdown"].parent
    with Image.open(out / "samples" / "epoch-0003.png") as grid:
        assert grid.size == (6 * (32 + 2) + 2, 6 * (32 + 2) + 2)
    with Image.open(report["paths"]["plot"]) as plot:
        assert plot.width > plot.height


def test_training_progress_by_hand():
    rows = [
        {"epoch": 1, "step": 4, "img_per_s": 8.0},
        {"epoch": 2, "step": 8, "img_per_s": 99.0},
        {"epoch": 2, "step": 8, "img_per_s": 16.0},  # a resumed run logged epoch 2 again: the last row wins
        {"bad": "row"},
    ]
    progress = training_progress(rows, batch_size=16)
    assert progress[1] == {"img_per_s": 8.0, "wall_s": 8.0}  # 4 steps x 16 images / 8 img/s
    assert progress[2] == {"img_per_s": 16.0, "wall_s": 12.0}  # + 4 x 16 / 16


def test_epochs_that_were_not_kept_are_refused(three_epoch_run: Path, tmp_path: Path):
    with pytest.raises(UserError, match=r"kept no snapshot of epoch 2; kept: 1, 3"):
        write_report(three_epoch_run, n=N, epochs=[2], out_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_a_run_without_snapshots_reports_its_last_generator(three_epoch_run: Path, tmp_path: Path):
    copy = tmp_path / "run"
    shutil.copytree(three_epoch_run, copy, ignore=shutil.ignore_patterns("snapshots", "report", "checkpoints"))
    paths = write_report(copy, n=16)
    rows = json.loads(paths["json"].read_text())["epochs"]
    assert [(r["epoch"], r["generator"]) for r in rows] == [(3, "generator.keras")]


def test_missing_training_data_needs_data_flag(three_epoch_run: Path, tmp_path: Path, garment_dir: Path):
    copy = tmp_path / "run"
    shutil.copytree(three_epoch_run, copy, ignore=shutil.ignore_patterns("report", "checkpoints"))
    config = json.loads((copy / "config.json").read_text())
    config["data_dir"] = str(tmp_path / "moved-away")
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="pass --data"):
        write_report(copy, n=16)
    paths = write_report(copy, n=16, data_dir=garment_dir, epochs=[3])
    assert json.loads(paths["json"].read_text())["data"]["dir"] == str(garment_dir)


def test_cli(three_epoch_run: Path, tmp_path: Path, capsys, caplog):
    assert main(["report", str(three_epoch_run), "--n", "16", "--epochs", "3", "--out", str(tmp_path / "r")]) == 0
    assert "report.md" in capsys.readouterr().out
    assert (tmp_path / "r" / "report.html").is_file()
    assert main(["report", str(three_epoch_run), "--epochs", "one"]) == 2
    assert "comma-separated integers" in caplog.text
    assert main(["report", str(three_epoch_run), "--n", "1", "--out", str(tmp_path / "x")]) == 2
    assert "--n must be at least" in caplog.text
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a folder" in caplog.text
    taken = tmp_path / "taken"
    taken.write_text("x")
    assert main(["report", str(three_epoch_run), "--n", "16", "--out", str(taken)]) == 2
    assert taken.read_text() == "x"

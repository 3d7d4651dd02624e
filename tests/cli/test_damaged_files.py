"""Damaged files under every command: a run folder's JSON, generator and checkpoints, a bundle's manifest and
models, the feature network, a capture archive. Each is the real command (`atelier.cli.main`): exit 2 and a
message naming the file, never a traceback. (A damaged capture manifest: test_capture_damaged_manifest.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fixtures_cli import assert_user_error, run_cli

from edge.bundle import write_manifest

GARBAGE = b"\x00\xffnot what this file should hold\x81" * 40

DAMAGE = {
    "garbage bytes": lambda p: p.write_bytes(GARBAGE),
    "cut short": lambda p: p.write_bytes(p.read_bytes()[: max(1, p.stat().st_size // 2)]),
    "zero bytes": lambda p: p.write_bytes(b""),
}


@pytest.fixture
def run_copy(tmp_path: Path, tiny_run: Path) -> Path:
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


@pytest.fixture
def bundle_copy(tmp_path: Path, tiny_bundle: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def _command(name: str, run: Path, data: Path, tmp_path: Path) -> list:
    return {
        "export": ["export", run, "--out", tmp_path / "bundle-out", "--no-edgetpu-compiler"],
        "train --resume": ["train", "--out", run, "--resume", "--epochs", "3", "--no-progress"],
        "evaluate": ["evaluate", run, "--data", data, "--n", "16", "--out", tmp_path / "eval"],
        "report": ["report", run, "--data", data, "--n", "16", "--out", tmp_path / "report"],
    }[name]


@pytest.mark.parametrize("damage", [*DAMAGE, "a JSON list"])
@pytest.mark.parametrize(("file", "command"), [
    ("config.json", "export"), ("config.json", "train --resume"), ("config.json", "evaluate"),
    ("config.json", "report"), ("summary.json", "export"), ("summary.json", "train --resume"),
    ("summary.json", "report"),
])
def test_damaged_run_json(run_copy: Path, garment_dir: Path, tmp_path: Path, file: str, command: str, damage: str,
                          capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    path = run_copy / file
    if damage == "a JSON list":
        path.write_text("[1, 2, 3]\n")
        expected = "should hold a JSON object, not a list"
    else:
        DAMAGE[damage](path)
        expected = "is not valid JSON, the file is damaged"
    assert_user_error(_command(command, run_copy, garment_dir, tmp_path), capsys, caplog, str(path), expected)


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("command", ["export", "evaluate"])
def test_damaged_generator_keras(run_copy: Path, garment_dir: Path, tmp_path: Path, command: str, damage: str,
                                 capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    DAMAGE[damage](run_copy / "generator.keras")
    assert_user_error(_command(command, run_copy, garment_dir, tmp_path), capsys, caplog,
                      f"cannot load {run_copy / 'generator.keras'}")


@pytest.mark.parametrize("damage", DAMAGE)
def test_resume_with_every_checkpoint_damaged_refuses_to_start_over(
    run_copy: Path, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Starting from step 0 would write new checkpoints over the damaged ones and replace the generator."""
    ckpts = sorted((run_copy / "checkpoints").glob("ckpt-*.npz"))
    assert ckpts
    for ckpt in ckpts:
        DAMAGE[damage](ckpt)
    before = (run_copy / "generator.keras").read_bytes()
    assert_user_error(_command("train --resume", run_copy, Path(), tmp_path), capsys, caplog,
                      "none of the checkpoints in", "can be read", ckpts[-1].name)
    assert (run_copy / "generator.keras").read_bytes() == before
    assert sorted((run_copy / "checkpoints").glob("ckpt-*.npz")) == ckpts


def test_resume_walks_past_garbage_in_the_checkpoint_folder(
    run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    ckpt_dir = run_copy / "checkpoints"
    newest_good = sorted(ckpt_dir.glob("ckpt-*.npz"))[-1]
    (ckpt_dir / "notes.txt").write_bytes(GARBAGE)
    (ckpt_dir / "ckpt-000000999.npz").write_bytes(GARBAGE)  # newest by name, unreadable
    rc, _, errors = run_cli(_command("train --resume", run_copy, Path(), tmp_path), capsys, caplog)
    assert rc == 0, errors
    assert f"resuming from {newest_good.name}" in caplog.text
    assert "ckpt-000000999.npz is unreadable" in caplog.text


def test_a_folder_where_the_run_keeps_a_file_is_refused(
    run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    (run_copy / "summary.json").unlink()
    (run_copy / "summary.json").mkdir()
    assert_user_error(_command("train --resume", run_copy, Path(), tmp_path), capsys, caplog,
                      f"{run_copy / 'summary.json'} is not a regular file")
    (run_copy / "summary.json").rmdir()
    (run_copy / "checkpoints" / "ckpt-000000999.npz").mkdir()
    assert_user_error(_command("train --resume", run_copy, Path(), tmp_path), capsys, caplog,
                      "ckpt-000000999.npz is not a regular file")


def test_damaged_metrics_lines_are_skipped_on_resume(
    run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    metrics = run_copy / "metrics.jsonl"
    good = metrics.read_text().splitlines()
    metrics.write_bytes(GARBAGE + b"\n[1, 2]\n" + "\n".join(good).encode() + b"\n")
    rc, _, errors = run_cli(_command("train --resume", run_copy, Path(), tmp_path), capsys, caplog)
    assert rc == 0, errors
    from trainer.run_folder import read_metrics

    assert [row["epoch"] for row in read_metrics(run_copy)] == [1, 2, 3]


@pytest.mark.parametrize("file", ["card.json", "garment_features.keras"])
@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_feature_network(tiny_run: Path, garment_dir: Path, tmp_path: Path, file: str, damage: str,
                                 capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    features = Path(shutil.copytree(Path(__file__).resolve().parents[2] / "models" / "features", tmp_path / "f"))
    DAMAGE[damage](features / file)
    assert_user_error(["evaluate", tiny_run, "--data", garment_dir, "--n", "16", "--features", features,
                       "--out", tmp_path / "eval"], capsys, caplog, str(features / file))


@pytest.mark.parametrize("damage", [*DAMAGE, "a JSON list"])
@pytest.mark.parametrize("command", ["generate", "kiosk"])
def test_damaged_bundle_manifest(bundle_copy: Path, tmp_path: Path, command: str, damage: str,
                                 capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    manifest = bundle_copy / "manifest.json"
    if damage == "a JSON list":
        manifest.write_text("[]")
    else:
        DAMAGE[damage](manifest)
    argv = {"generate": ["generate", bundle_copy, "--n", "2", "--out", tmp_path / "designs"],
            "kiosk": ["kiosk", "--bundle", bundle_copy, "--port", "0"]}[command]
    assert_user_error(argv, capsys, caplog, str(manifest))
    assert not (tmp_path / "designs").exists()


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("rehashed", [False, True], ids=["as damaged", "manifest re-hashed"])
@pytest.mark.parametrize("command", ["generate", "kiosk"])
def test_damaged_tflite(bundle_copy: Path, tmp_path: Path, command: str, rehashed: bool, damage: str,
                        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """Caught by its checksum; and when someone re-hashed the manifest over it, by the TFLite loader."""
    model = bundle_copy / "generator_b1.tflite"
    DAMAGE[damage](model)
    if rehashed:
        write_manifest(bundle_copy, json.loads((bundle_copy / "manifest.json").read_text()))
    argv = {"generate": ["generate", bundle_copy, "--n", "2", "--batch", "1", "--out", tmp_path / "designs"],
            "kiosk": ["kiosk", "--bundle", bundle_copy, "--port", "0"]}[command]
    assert_user_error(argv, capsys, caplog, str(model))


@pytest.mark.parametrize("damage", [*DAMAGE, "a folder"])
@pytest.mark.parametrize("command", ["capture import", "train --data", "finetune --captures"])
def test_damaged_capture_archive(tiny_run: Path, tmp_path: Path, command: str, damage: str,
                                 capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    from test_capture_store import _add

    from edge.capture.archive import export_archive
    from edge.capture.store import CaptureStore

    with CaptureStore(tmp_path / "store", min_free_bytes=0) as store:
        for i in range(3):
            _add(store, i)
    tar = export_archive(tmp_path / "store", tmp_path / "captures.tar", progress=False)
    if damage == "a folder":
        tar.unlink()
        tar.mkdir()
    else:
        DAMAGE[damage](tar)
    argv = {
        "capture import": ["capture", "import", tar, "--store", tmp_path / "new-store"],
        "train --data": ["train", "--data", tar, "--out", tmp_path / "run", "--preset", "tiny", "--size", "32",
                         "--epochs", "1", "--no-progress"],
        "finetune --captures": ["finetune", "--from", tiny_run, "--captures", tar, "--out", tmp_path / "ft",
                                "--steps", "2", "--no-export", "--no-progress"],
    }[command]
    assert_user_error(argv, capsys, caplog, str(tar))
    assert not (tmp_path / "run").exists() and not (tmp_path / "ft").exists()

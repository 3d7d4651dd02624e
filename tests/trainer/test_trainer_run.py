"""Training end to end: the run folder, resume (exact and after SIGKILL), the NaN guard, and the CLI."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge.errors import UserError
from trainer import checkpoints, run_folder
from trainer.config import preset
from trainer.train import TrainingDiverged, train

RUN_FILES = ["config.json", "data_report.json", "metrics.jsonl", "summary.json", "generator.keras",
             "loss_curve.png", "samples/epoch-0001.png", "samples/epoch-0002.png",
             "snapshots/epoch-0001/generator.keras", "snapshots/epoch-0002/generator.keras"]


def _atelier(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "atelier", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def _ckpt(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def test_tiny_run_folder_is_complete_with_finite_losses(tiny_run: Path) -> None:
    for name in RUN_FILES:
        assert (tiny_run / name).is_file(), name
    assert list((tiny_run / "tensorboard").iterdir())
    rows = run_folder.read_metrics(tiny_run)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(math.isfinite(r["d_loss"]) and math.isfinite(r["g_loss"]) and r["img_per_s"] > 0 for r in rows)
    summary = run_folder.read_summary(tiny_run)
    assert summary["steps"] == rows[-1]["step"] == 2 * (72 // 16)
    assert summary["images_seen"] == summary["steps"] * 16
    assert summary["data"]["classes"] == ["dress", "t-shirt", "trousers"]
    config = run_folder.read_config(tiny_run)
    assert config["preset"] == "tiny" and config["z_dim"] == 16 and config["class_names"] == summary["data"]["classes"]


def test_training_changes_the_weights_and_the_generator_draws(tiny_run: Path) -> None:
    import keras

    from trainer.config import TrainConfig
    from trainer.networks import build_generator

    cfg = TrainConfig.from_json(run_folder.read_config(tiny_run))
    keras.utils.set_random_seed(cfg.seed)
    untrained = build_generator(cfg)
    trained = run_folder.load_generator(tiny_run)
    changed = [not np.allclose(a, b) for a, b in zip(untrained.get_weights(), trained.get_weights(), strict=True)]
    assert all(changed[: len(changed) // 2]) and sum(changed) >= len(changed) - 2
    z = np.random.default_rng(0).standard_normal((4, cfg.z_dim)).astype(np.float32)
    images = trained.predict(z, verbose=0)
    assert images.shape == (4, 32, 32, 3) and np.all(np.abs(images) <= 1.0)
    assert images.std() > 0.01  # not a flat image


def test_conditional_run_draws_each_class(tiny_conditional_run: Path) -> None:
    generator = run_folder.load_generator(tiny_conditional_run)
    assert [t.name for t in generator.inputs] == ["z", "class_onehot"]
    z = np.zeros((3, 16), np.float32)
    images = generator.predict([z, np.eye(3, dtype=np.float32)], verbose=0)
    assert not np.allclose(images[0], images[1]) and not np.allclose(images[1], images[2])


def test_resume_after_epoch_one_equals_the_uninterrupted_run(garment_dir: Path, tmp_path: Path) -> None:
    def cfg(epochs: int):
        return preset("tiny", epochs=epochs, data_dir=str(garment_dir), seed=11, steps_per_checkpoint=3)

    straight = train(cfg(2), tmp_path / "straight", progress=False)
    train(cfg(1), tmp_path / "split", progress=False)
    resumed = train(cfg(2), tmp_path / "split", resume=True, progress=False)
    assert straight.steps == resumed.steps == 8
    a = _ckpt(tmp_path / "straight" / "checkpoints" / "ckpt-000000008.npz")
    b = _ckpt(tmp_path / "split" / "checkpoints" / "ckpt-000000008.npz")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert [r["epoch"] for r in run_folder.read_metrics(tmp_path / "split")] == [1, 2]


def test_a_run_carried_elsewhere_resumes_with_its_photos_found_by_data(garment_dir: Path, tmp_path: Path) -> None:
    """A run folder committed and cloned elsewhere: only its config, reports and last checkpoint travel, its
    recorded data folder is not there; `--resume --data` names the same photos in their new place."""
    import shutil

    def cfg(epochs: int, data: Path):
        return preset("tiny", epochs=epochs, data_dir=str(data), seed=11, steps_per_checkpoint=3)

    straight = train(cfg(2, garment_dir), tmp_path / "straight", progress=False)
    train(cfg(1, garment_dir), tmp_path / "here", progress=False)
    carried = tmp_path / "carried"
    (carried / "checkpoints").mkdir(parents=True)
    for name in ("config.json", "data_report.json", "metrics.jsonl", "summary.json"):
        shutil.copy2(tmp_path / "here" / name, carried / name)
    last = checkpoints.list_checkpoints(tmp_path / "here" / "checkpoints")[-1]
    shutil.copy2(last, carried / "checkpoints" / last.name)
    config = json.loads((carried / "config.json").read_text())
    config["data_dir"] = "../datasets/gone/train"  # a relative path of the machine it came from
    (carried / "config.json").write_text(json.dumps(config))
    moved = Path(shutil.copytree(garment_dir, tmp_path / "elsewhere" / "photos"))
    resumed = train(cfg(2, moved), carried, resume=True, progress=False)
    assert resumed.steps == straight.steps == 8
    a = _ckpt(tmp_path / "straight" / "checkpoints" / "ckpt-000000008.npz")
    b = _ckpt(carried / "checkpoints" / "ckpt-000000008.npz")
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    # Other photos under --data are refused before anything is written.
    other = Path(shutil.copytree(garment_dir, tmp_path / "other"))
    next(p for p in other.rglob("*.png")).unlink()
    with pytest.raises(UserError, match="not the ones this run trained on"):
        train(cfg(3, other), carried, resume=True, progress=False)


def test_time_budget_stops_mid_epoch_and_resume_continues_exactly(garment_dir: Path, tmp_path: Path) -> None:
    def cfg(epochs: int):
        return preset("tiny", epochs=epochs, data_dir=str(garment_dir), seed=11, steps_per_checkpoint=3)

    straight = train(cfg(2), tmp_path / "straight", progress=False)
    # A budget of 1 ms is used up by the first step: the run stops there, mid-epoch, and checkpoints it.
    short = train(cfg(2), tmp_path / "budget", progress=False, time_budget_s=0.001)
    assert short.out_of_time and short.steps == 1
    summary = run_folder.read_summary(tmp_path / "budget")
    assert summary["stopped"] == "time budget" and summary["steps"] == 1 and summary["epochs_done"] == 0
    assert summary["epochs_trained"] == 0.25 and summary["time_budget_s"] == 0.001
    assert (tmp_path / "budget" / "samples" / "step-0000001.png").is_file()
    assert (tmp_path / "budget" / run_folder.GENERATOR).is_file()
    assert [c.name for c in checkpoints.list_checkpoints(tmp_path / "budget" / "checkpoints")] == \
        ["ckpt-000000001.npz"]
    assert run_folder.read_metrics(tmp_path / "budget") == []  # no epoch row for a partial epoch
    # The same budget again: already used, nothing is trained.
    again = train(cfg(2), tmp_path / "budget", resume=True, progress=False, time_budget_s=0.001)
    assert again.out_of_time and again.steps == 1
    # Without a budget the run goes on from step 1 and ends where the uninterrupted run did, weight for weight.
    resumed = train(cfg(2), tmp_path / "budget", resume=True, progress=False)
    assert not resumed.out_of_time and resumed.steps == straight.steps == 8
    a = _ckpt(tmp_path / "straight" / "checkpoints" / "ckpt-000000008.npz")
    b = _ckpt(tmp_path / "budget" / "checkpoints" / "ckpt-000000008.npz")
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert "stopped" not in run_folder.read_summary(tmp_path / "budget")
    assert [r["epoch"] for r in run_folder.read_metrics(tmp_path / "budget")] == [1, 2]


def test_sigkill_mid_run_resumes_from_last_complete_checkpoint(garment_dir: Path, tmp_path: Path) -> None:
    """A real `kill -9` of a real training process, then --resume: it ends weight for weight where a run that was
    never killed ends."""
    epochs, spe = 10, 72 // 16
    args = ["--data", str(garment_dir), "--preset", "tiny", "--epochs", str(epochs), "--steps-per-checkpoint", "2",
            "--seed", "4", "--no-progress"]
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "atelier", "train", *args, "--out", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(checkpoints.list_checkpoints(run / "checkpoints")) < 3:
            time.sleep(0.05)
        assert proc.poll() is None, "training ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    kept = checkpoints.list_checkpoints(run / "checkpoints")
    assert kept, "no checkpoint survived"
    newest = checkpoints.read_latest(run / "checkpoints")
    assert newest is not None and newest.path == kept[-1], "the newest checkpoint left by the kill is unreadable"
    assert 0 < newest.step < epochs * spe, "the kill came too late to test anything"
    done = _atelier("train", "--out", str(run), "--resume", "--epochs", str(epochs), "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming from {newest.path.name} (step {newest.step})" in done.stderr
    assert run_folder.read_summary(run)["steps"] == epochs * spe
    straight = _atelier("train", *args, "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-2000:]
    final = f"ckpt-{epochs * spe:09d}.npz"
    a = _ckpt(tmp_path / "straight" / "checkpoints" / final)
    b = _ckpt(run / "checkpoints" / final)
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(garment_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "nan"
    train(preset("tiny", epochs=1, data_dir=str(garment_dir)), run, progress=False)
    good = checkpoints.list_checkpoints(run / "checkpoints")[-1]
    state = _ckpt(good)
    poisoned = {k: (np.full_like(v, np.nan) if k.startswith("generator/") and v.dtype == np.float32 else v)
                for k, v in state.items()}
    bad = run / "checkpoints" / "ckpt-000000099.npz"  # a newer, poisoned state
    np.savez(bad, **poisoned)
    with pytest.raises(TrainingDiverged, match=r"diverged.*last good checkpoint"):
        train(preset("tiny", epochs=2), run, resume=True, progress=False)
    assert checkpoints.list_checkpoints(run / "checkpoints")[-1] == bad  # nothing written after the NaN
    assert len(run_folder.read_metrics(run)) == 1


def test_cli_errors_are_clear(garment_dir: Path, tiny_run: Path, tmp_path: Path) -> None:
    again = _atelier("train", "--data", str(garment_dir), "--out", str(tiny_run), "--preset", "tiny")
    assert again.returncode == 2 and "already holds a run; pass --resume" in again.stderr
    missing = _atelier("train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    size = _atelier("train", "--data", str(garment_dir), "--out", str(tmp_path / "r"), "--size", "100")
    assert size.returncode == 2 and "--size must be one of 32, 64, 128" in size.stderr
    resume = _atelier("train", "--out", str(tmp_path / "fresh"), "--resume")
    assert resume.returncode == 2 and "has no config.json" in resume.stderr
    cond = _atelier("train", "--data", str(garment_dir / "dress"), "--out", str(tmp_path / "c"), "--preset",
                    "tiny", "--conditional")
    assert cond.returncode == 2 and "--conditional needs at least two classes" in cond.stderr
    for budget in ("0", "-5", "nan"):
        bad = _atelier("train", "--data", str(garment_dir), "--out", str(tmp_path / "b"), "--time-budget", budget)
        assert bad.returncode == 2 and "--time-budget must be a positive number of minutes" in bad.stderr, budget
    word = _atelier("train", "--data", str(garment_dir), "--out", str(tmp_path / "b"), "--time-budget", "soon")
    assert word.returncode == 2 and "--time-budget: invalid float value" in word.stderr
    assert not (tmp_path / "b").exists()


def test_config_json_round_trips_and_rejects_unknown_fields(tiny_run: Path) -> None:
    from trainer.config import TrainConfig

    data = json.loads((tiny_run / "config.json").read_text())
    assert TrainConfig.from_json(data).to_json() == data
    with pytest.raises(UserError, match="unknown fields"):
        TrainConfig.from_json({**data, "learning_rate_typo": 1})


def test_epoch_end_checkpoint_is_written_after_the_epochs_files(tiny_run: Path) -> None:
    # A kill between the two must leave an older checkpoint, so --resume redoes the epoch and its files.
    last = checkpoints.list_checkpoints(tiny_run / "checkpoints")[-1]
    assert last.name == "ckpt-000000008.npz"
    written = last.stat().st_mtime_ns
    for name in ("generator.keras", "summary.json", "samples/epoch-0002.png", "snapshots/epoch-0002/generator.keras"):
        assert (tiny_run / name).stat().st_mtime_ns <= written, name


def test_a_state_with_nan_is_never_checkpointed(tmp_path: Path) -> None:
    from trainer.train import _build

    gan = _build(preset("tiny"))
    weight = gan.generator.trainable_weights[0]
    weight.assign(np.where(np.arange(weight.shape[-1]) == 0, np.inf, weight.numpy()))
    with pytest.raises(checkpoints.NonFiniteStateError, match="NaN or Inf"):
        checkpoints.save_checkpoint(gan, tmp_path, keep=3)
    assert not list(tmp_path.iterdir())


def test_a_damaged_config_is_a_clear_error_on_resume(tiny_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    (run / "config.json").write_text('{"preset": "tiny", ')  # cut short
    result = _atelier("train", "--out", str(run), "--resume")
    assert result.returncode == 2 and "config.json is not valid JSON" in result.stderr

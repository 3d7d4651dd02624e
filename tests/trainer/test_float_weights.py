"""A bundle's float weights (`atelier export --float-weights`) and `atelier finetune --from BUNDLE`, with the bad
inputs: a damaged or missing checkpoint, a damaged weights.json, a bundle without weights, a busy output folder.
Also the conditional recipe's auxiliary classifier (AC-GAN) in D."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_finetune import capture_store

from atelier.cli import main as atelier_main
from edge.bundle import load_bundle
from edge.errors import UserError
from trainer import checkpoints
from trainer.config import preset
from trainer.float_weights import WEIGHTS_INFO, resolve_finetune_source


@pytest.fixture(scope="module")
def bundle_with_weights(tmp_path_factory: pytest.TempPathFactory, tiny_conditional_run: Path) -> Path:
    root = tmp_path_factory.mktemp("float-weights")
    bundle = root / "models" / "shop"
    assert atelier_main(["export", str(tiny_conditional_run), "--out", str(bundle),
                         "--float-weights", str(root / "models" / "shop-float")]) == 0
    return bundle


def test_export_writes_the_float_weights_beside_the_bundle_and_names_them(bundle_with_weights: Path,
                                                                         tiny_conditional_run: Path) -> None:
    weights = bundle_with_weights.parent / "shop-float"
    manifest = json.loads((bundle_with_weights / "manifest.json").read_text())
    assert manifest["training"]["float_weights"] == "../shop-float"
    load_bundle(bundle_with_weights)  # still a verified bundle after the manifest was rewritten
    info = json.loads((weights / WEIGHTS_INFO).read_text())
    assert manifest["training"]["float_weights_sha256"] == info["checkpoint"]["sha256"]
    config = json.loads((weights / "config.json").read_text())
    assert config["data_dir"] == "" and config["conditional"] is True
    run_ckpt = checkpoints.read_latest(tiny_conditional_run / "checkpoints")
    ckpt = checkpoints.read_latest(weights / "checkpoints")
    assert run_ckpt is not None and ckpt is not None and ckpt.step == run_ckpt.step == info["step"]
    for group in ("generator", "discriminator", "ema_generator"):
        assert len(ckpt.arrays[group]) == len(run_ckpt.arrays[group]) > 0
        for a, b in zip(ckpt.arrays[group], run_ckpt.arrays[group], strict=True):
            np.testing.assert_array_equal(a, b)
    assert ckpt.arrays["g_optimizer"] == [] and ckpt.arrays["d_optimizer"] == []  # no optimizer state
    assert info["parameters"]["generator"] == sum(a.size for a in run_ckpt.arrays["generator"])
    assert resolve_finetune_source(bundle_with_weights) == weights.resolve()


def test_finetune_from_a_bundle_trains_from_its_float_weights(bundle_with_weights: Path, tmp_path: Path) -> None:
    store = capture_store(tmp_path / "captures", {"dress": 4, "skirt": 4})
    out = tmp_path / "tuned"
    assert atelier_main(["finetune", "--from", str(bundle_with_weights), "--captures", str(store), "--out",
                         str(out), "--steps", "4", "--eval-n", "8", "--no-export", "--no-progress"]) == 0
    report = json.loads((out / "finetune.json").read_text())
    assert report["freeze_d"]["from_checkpoint"] is True and report["freeze_d"]["frozen_layers"]
    assert report["classes"]["new"] == ["skirt"]
    assert Path(report["from_run"]).name == "shop-float"


def test_finetune_from_a_bundle_refuses_damaged_or_missing_weights(bundle_with_weights: Path, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    store = capture_store(tmp_path / "captures", {"dress": 3})
    root = tmp_path / "copy"
    shutil.copytree(bundle_with_weights.parent, root)
    bundle, weights = root / "shop", root / "shop-float"
    ckpt = next((weights / "checkpoints").glob("ckpt-*.npz"))
    original = ckpt.read_bytes()

    def refused(message: str) -> None:
        caplog.clear()
        out = tmp_path / "never"
        assert atelier_main(["finetune", "--from", str(bundle), "--captures", str(store), "--out", str(out),
                             "--steps", "2", "--no-progress"]) == 2
        assert message in caplog.text and "Traceback" not in caplog.text
        assert not out.exists()

    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(damaged))
    refused("is damaged (its sha256 differs")
    ckpt.unlink()
    refused("is missing: the float weights are incomplete")
    ckpt.write_bytes(original)
    info = (weights / WEIGHTS_INFO).read_text()
    (weights / WEIGHTS_INFO).write_text(info[: len(info) // 2])
    refused("weights.json is damaged")
    (weights / WEIGHTS_INFO).unlink()
    refused("holds no float weights")
    (weights / WEIGHTS_INFO).write_text(info)
    manifest = json.loads((bundle / "manifest.json").read_text())
    good = json.dumps(manifest)
    manifest["training"]["float_weights_sha256"] = "0" * 64  # weights of another export in the folder
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    refused("are not the ones")
    manifest["training"]["float_weights"] = 7
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    refused("training.float_weights must name a folder")
    (bundle / "manifest.json").write_text(good)
    shutil.move(weights, root / "elsewhere")  # the bundle copied without its sibling folder
    refused("that " + str(bundle / "manifest.json") + " names is not at")
    del manifest["training"]["float_weights"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    refused("a model bundle without float weights")


def test_resuming_a_float_weights_folder_says_to_fine_tune_it(bundle_with_weights: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    weights = bundle_with_weights.parent / "shop-float"
    assert atelier_main(["train", "--resume", "--out", str(weights), "--no-progress"]) == 2
    assert "holds a bundle's float weights, not a run" in caplog.text and "Traceback" not in caplog.text


def test_export_refuses_a_float_weights_folder_that_holds_something_else(tiny_conditional_run: Path,
                                                                        tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert atelier_main(["export", str(tiny_conditional_run), "--out", str(tmp_path / "b"),
                         "--float-weights", str(busy)]) == 2
    assert "is not a weights folder" in caplog.text
    assert (busy / "notes.txt").read_text() == "mine" and sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    assert not (tmp_path / "b").exists()  # refused before the bundle was written


def test_the_auxiliary_classifier_needs_a_conditional_model_and_gives_d_class_logits() -> None:
    from trainer.networks import build_discriminator

    with pytest.raises(UserError, match="needs a class-conditional model"):
        preset("tiny", aux_class_weight=0.5)
    with pytest.raises(UserError, match="0 or more"):
        preset("tiny", conditional=True, class_names=["a", "b"], aux_class_weight=-1.0)
    cfg = preset("tiny", conditional=True, class_names=["a", "b", "c"], aux_class_weight=0.5)
    d = build_discriminator(cfg)
    logit, class_logits = d([np.zeros((2, 32, 32, 3), np.float32), np.array([0, 2], np.int32)])
    assert tuple(logit.shape) == (2, 1) and tuple(class_logits.shape) == (2, 3)
    assert tuple(build_discriminator(preset("tiny", conditional=True, class_names=["a", "b"]))(
        [np.zeros((1, 32, 32, 3), np.float32), np.array([1], np.int32)]).shape) == (1, 1)


def test_training_with_the_auxiliary_classifier_teaches_d_the_classes(garment_dir: Path, tmp_path: Path) -> None:
    """D's class head names the class of the training pictures well above chance after a short run (it is
    trained only by the class term, so a broken term leaves it at chance)."""
    from fixtures_runs import _train_tiny

    from trainer.config import TrainConfig
    from trainer.dataset import load_training_data
    from trainer.networks import build_discriminator

    run = _train_tiny(tmp_path / "aux", garment_dir, conditional=True, aux_class_weight=1.0, epochs=30)
    cfg = TrainConfig.from_json(json.loads((run / "config.json").read_text()))
    d = build_discriminator(cfg)
    ckpt = checkpoints.read_latest(run / "checkpoints")
    assert ckpt is not None
    checkpoints.assign_checked(d.weights, ckpt.arrays["discriminator"], "discriminator", ckpt.path)
    data = load_training_data(garment_dir, cfg.size_px, classes=cfg.class_names, progress=False)
    images = data.images.astype(np.float32) / 127.5 - 1.0  # as make_dataset feeds them
    _, class_logits = d([images, data.labels])
    accuracy = float(np.mean(np.argmax(np.asarray(class_logits), axis=1) == data.labels))
    assert accuracy > 0.55, accuracy  # chance is 1/3 (0.69 measured)


def test_a_new_class_widens_the_auxiliary_classifier_by_its_class_columns() -> None:
    """Fine-tuning a new class into a model with the auxiliary classifier: its kernel (features, classes) grows a
    column and its bias an entry, each the mean of the old classes'; every other weight is copied."""
    from trainer.finetune import transfer_weights
    from trainer.networks import build_discriminator

    old = build_discriminator(preset("tiny", conditional=True, class_names=["a", "b"], aux_class_weight=0.5))
    new = build_discriminator(preset("tiny", conditional=True, class_names=["a", "b", "c"], aux_class_weight=0.5))
    head = old.get_layer("class_logits")
    head.kernel.assign(np.random.default_rng(0).normal(size=head.kernel.shape).astype(np.float32))
    head.bias.assign(np.array([1.0, 3.0], np.float32))
    widened = transfer_weights(old, new, n_old_classes=2)
    assert any("class_logits" in w for w in widened) and any("class_embed" in w for w in widened)
    kernel, bias = (np.asarray(w.numpy()) for w in new.get_layer("class_logits").weights)
    old_kernel = np.asarray(head.kernel.numpy())
    np.testing.assert_array_equal(kernel[:, :2], old_kernel)
    np.testing.assert_allclose(kernel[:, 2], old_kernel.mean(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(bias, [1.0, 3.0, 2.0])

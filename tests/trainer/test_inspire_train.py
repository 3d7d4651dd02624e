"""`atelier train-encoder`: the float generator rebuilt from an int8 bundle, training from a run folder and from a
bundle, the int8 export with its parity report and lint, and the refusals (real TensorFlow, real interpreters)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from atelier.cli import main
from edge.bundle import load_bundle
from trainer.encoder import MAX_MACS, EncoderSpec, build_encoder, encoder_macs


def test_the_encoder_fits_the_budget_for_every_generator_shape() -> None:
    for size, z_dim, classes in ((32, 16, 0), (64, 128, 3), (128, 128, 0), (128, 256, 10)):
        model = build_encoder(EncoderSpec(size, z_dim, classes))
        assert encoder_macs(model) <= MAX_MACS, (size, z_dim)
        out = model(np.zeros((2, size, size, 3), np.float32))
        assert out["z"].shape == (2, z_dim)
        assert ("class_logits" in out) == bool(classes)


def test_the_float_generator_rebuilt_from_int8_matches_the_run(tiny_run: Path, tiny_bundle: Path) -> None:
    from edge.designs import sample_prior
    from trainer import run_folder
    from trainer.generator_source import load_generator_source

    rebuilt = load_generator_source(tiny_bundle)
    assert rebuilt.kind == "bundle" and rebuilt.rebuild_psnr_db > 30
    original = run_folder.load_generator(tiny_run)
    z = sample_prior(16, rebuilt.z_dim, rebuilt.z_distribution, 3)
    a = run_folder.to_uint8(original({"z": z}, training=False)).astype(float)
    b = run_folder.to_uint8(rebuilt.model({"z": z}, training=False)).astype(float)
    psnr = 10 * np.log10(255**2 / np.mean((a - b) ** 2))
    assert psnr > 30, psnr  # the dequantized weights are the run's weights, up to int8 rounding


def test_train_encoder_from_a_run_writes_the_float_encoder_and_an_int8_one_into_its_bundle(
    tiny_conditional_run: Path, tiny_conditional_bundle: Path, garment_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(tiny_conditional_run, run)
    shutil.copytree(tiny_conditional_bundle, bundle_dir)
    before = load_bundle(bundle_dir)
    code = main(["train-encoder", str(run), "--bundle", str(bundle_dir), "--data", str(garment_dir),
                 "--synthetic-steps", "20", "--real-steps", "10", "--batch-size", "8", "--no-progress"])
    assert code == 0
    assert (run / "encoder.keras").is_file()
    bundle = load_bundle(bundle_dir)  # verifies the hashes the writer recorded
    assert bundle.encoder is not None and bundle.model_id != before.model_id
    entry = bundle.manifest["encoder"]
    assert [t["name"] for t in entry["outputs"]] == ["z", "class_logits"]
    assert entry["input"]["dtype"] == "int8" and entry["input"]["shape"] == [1, 32, 32, 3]
    assert entry["macs"] <= MAX_MACS and entry["edgetpu_lint"]["edgetpu_ready"]
    assert set(entry["edgetpu_lint"]["ops"]) <= {"CONV_2D", "FULLY_CONNECTED", "RESHAPE"}
    parity = entry["parity"]
    assert parity["passed"] and parity["latent_cosine_mean"] > 0.95 and 0 <= parity["class_agreement"] <= 1
    assert entry["training"]["command"][:2] == ["atelier", "train-encoder"]
    assert entry["training"]["data"]["n_images"] > 0 and entry["training"]["generator"]["kind"] == "run"
    assert '"/' not in json.dumps(entry["training"])  # no machine paths: the bundle travels
    # The generator files are untouched.
    assert all(bundle.manifest["files"][f] == before.manifest["files"][f] for f in before.manifest["files"])


def test_train_encoder_refuses_what_it_cannot_use(tiny_run: Path, tiny_conditional_bundle: Path, tmp_path: Path,
                                                  caplog) -> None:
    assert main(["train-encoder", str(tmp_path / "nothing")]) == 2
    assert "not a folder" in caplog.text
    caplog.clear()
    # A bundle exported from another run: its designs differ, so it is refused before any training.
    assert main(["train-encoder", str(tiny_run), "--bundle", str(tiny_conditional_bundle)]) == 2
    assert "was not exported from" in caplog.text and "classes" in caplog.text
    caplog.clear()
    stale = tmp_path / "bundle"
    shutil.copytree(tiny_conditional_bundle, stale)
    manifest = json.loads((stale / "manifest.json").read_text())
    manifest["training"]["config"]["data_dir"] = str(tmp_path / "moved-away")
    (stale / "manifest.json").write_text(json.dumps(manifest))
    assert main(["train-encoder", str(stale), "--no-progress"]) == 2  # its training photos are gone
    assert "pass --data" in caplog.text
    assert not (stale / "encoder_b1.tflite").exists()


def test_evaluate_encoder_measures_held_out_photos_and_draws_the_picture(
    tiny_conditional_inspire_bundle: Path, garment_dir: Path, tmp_path: Path
) -> None:
    from PIL import Image

    out = tmp_path / "eval"
    assert main(["evaluate-encoder", str(tiny_conditional_inspire_bundle), "--data", str(garment_dir),
                 "--out", str(out), "--n-random", "50"]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    fd, colour = report["feature_distance"], report["colour_error"]
    assert report["n_photos"] > 0 and report["n_random"] == 50
    assert fd["ratio_to_random"] == round(fd["reconstruction"] / fd["random_mean"], 4)
    assert fd["random_nearest_of_n"] <= fd["random_mean"] and set(fd["variations"]) == {"200", "300", "400",
                                                                                       "550", "700"}
    assert colour["reconstruction"] >= 0 and 0 <= report["class_agreement"] <= 1
    # The kiosk's search, scored in pixels, must not leave the design further from the photo in colour.
    assert 0 <= colour["searched"] <= colour["reconstruction"] * 1.05 and fd["searched"] > 0
    assert fd["searched_ratio_to_random"] == round(fd["searched"] / fd["random_mean"], 4)
    picture = np.asarray(Image.open(out / "inspire.jpg"))
    rows = min(8, report["n_photos"])
    assert picture.shape[1] == 7 * 32 + 8 * 4 and picture.shape[0] == rows * 32 + (rows + 1) * 4
    assert main(["evaluate-encoder", str(tmp_path), "--data", str(garment_dir)]) == 2  # not a bundle

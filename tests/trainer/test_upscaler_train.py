"""`atelier train-upscaler` on the tiny bundle and procedural garments: the int8 upscaler lands in the bundle with
its hash, parity, Edge TPU lint and comparison with bilinear; the kiosk runtime runs it. Bad inputs tried: not a
bundle, a missing data folder, zero steps, an odd crop, a damaged, missing or mismatched upscaler file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from atelier.cli import main
from edge.bundle import BundleError, file_sha256, load_bundle
from edge.designs import DesignGenerator
from edge.errors import UserError
from edge.kernels import upscale
from edge.upscaler import Upscaler, enlarge, load_upscaler
from trainer.upscaler import MAX_MACS, UpscalerTrainConfig, build_upscaler, upscaler_macs


def test_an_untrained_upscaler_is_exactly_bilinear_and_fits_the_budget() -> None:
    model = build_upscaler(128)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 128, 128, 3)).astype(np.float32)
    import keras

    bilinear = keras.layers.UpSampling2D(2, interpolation="bilinear")(x)
    assert np.allclose(np.asarray(model(x)), np.asarray(bilinear), atol=1e-6)  # the detail branch starts at zero
    assert upscaler_macs(model) == 256 * 256 * (27 * 16 + 144 * 16 + 144 * 3) <= MAX_MACS


def test_train_upscaler_writes_an_int8_upscaler_the_kiosk_runs(tiny_upscaler_bundle: Path, tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_upscaler_bundle)
    entry = bundle.manifest["upscaler"]
    assert entry["file"] == "upscaler_b1.tflite" and entry["sha256"] == file_sha256(
        tiny_upscaler_bundle / "upscaler_b1.tflite")
    assert entry["input"]["shape"] == [1, 32, 32, 3] and entry["output"]["shape"] == [1, 64, 64, 3]
    assert entry["input"]["dtype"] == entry["output"]["dtype"] == "int8"
    assert entry["parity"]["passed"] and entry["parity"]["psnr_db_median"] >= 30
    assert entry["edgetpu_lint"]["edgetpu_ready"] and set(entry["edgetpu_lint"]["ops"]) <= {
        "ADD", "CONV_2D", "RESIZE_BILINEAR", "QUANTIZE", "DEQUANTIZE"}
    versus = entry["versus_bilinear"]
    assert versus["n_photos"] > 0 and versus["psnr_db"]["bilinear"] > 0 and versus["sharpness"]["photos"] > 0
    assert entry["training"]["command"] == ["pytest-fixture"]
    original = load_bundle(tiny_bundle)
    assert bundle.model_id != original.model_id  # the upscaler is part of what the bundle is
    for model in original.manifest["models"]:  # the generator files are untouched
        assert file_sha256(tiny_upscaler_bundle / model["file"]) == file_sha256(tiny_bundle / model["file"])
    design = DesignGenerator(bundle, batch=1).generate(np.zeros((1, bundle.z_dim), np.float32))[0]
    upscaler, why = load_upscaler(bundle)
    assert upscaler is not None and why is None
    big = upscaler.upscale2x(design)
    assert big.shape == (64, 64, 3) and big.dtype == np.uint8
    assert np.array_equal(enlarge(design, 2, upscaler), big)
    assert np.array_equal(enlarge(design, 4, upscaler), upscale(big, 2, mode="bilinear"))
    assert np.array_equal(enlarge(design, 3, upscaler), upscale(design, 3, mode="bilinear"))  # odd: bilinear
    assert np.array_equal(enlarge(design, 2, None), upscale(design, 2, mode="bilinear"))
    assert load_upscaler(original) == (None, None)  # no upscaler: nothing to report


def test_a_damaged_or_mismatched_upscaler_fails_soft(tiny_upscaler_bundle: Path, tmp_path: Path) -> None:
    damaged = Path(shutil.copytree(tiny_upscaler_bundle, tmp_path / "damaged"))
    data = bytearray((damaged / "upscaler_b1.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (damaged / "upscaler_b1.tflite").write_bytes(bytes(data))
    bundle = load_bundle(damaged)  # the generator still loads and serves
    upscaler, why = load_upscaler(bundle)
    assert upscaler is None and "sha256" in (why or "")
    (damaged / "upscaler_b1.tflite").unlink()
    assert load_upscaler(load_bundle(damaged))[0] is None
    mismatched = Path(shutil.copytree(tiny_upscaler_bundle, tmp_path / "mismatched"))
    manifest = json.loads((mismatched / "manifest.json").read_text())
    manifest["upscaler"]["output"]["shape"] = [1, 96, 96, 3]
    (mismatched / "manifest.json").write_text(json.dumps(manifest))
    upscaler, why = load_upscaler(load_bundle(mismatched))
    assert upscaler is None and "expected" in (why or "")
    manifest["upscaler"] = "not an object"
    (mismatched / "manifest.json").write_text(json.dumps(manifest))
    assert "JSON object" in (load_upscaler(load_bundle(mismatched))[1] or "")
    manifest["upscaler"] = json.loads((tiny_upscaler_bundle / "manifest.json").read_text())["upscaler"]
    manifest["upscaler"]["input"]["shape"] = [1, 16, 16, 3]
    (mismatched / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="expected"):
        Upscaler(load_bundle(mismatched))


def test_train_upscaler_refuses_what_it_cannot_use(tiny_bundle: Path, garment_dir: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    copy = Path(shutil.copytree(tiny_bundle, tmp_path / "b"))
    before = (copy / "manifest.json").read_bytes()
    assert main(["train-upscaler", str(tmp_path), "--data", str(garment_dir)]) == 2  # not a bundle
    assert main(["train-upscaler", str(copy), "--data", str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in caplog.text
    assert main(["train-upscaler", str(copy), "--data", str(garment_dir), "--steps", "0"]) == 2
    assert "at least 1" in caplog.text
    assert (copy / "manifest.json").read_bytes() == before and not (copy / "upscaler_b1.tflite").exists()
    with pytest.raises(UserError, match="even number"):
        UpscalerTrainConfig(crop_px=33).validate()

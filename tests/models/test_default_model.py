"""The committed default bundle (models/default): it verifies, fits the budgets, says how it was made and how good
it is, and makes designs with the edge runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.bundle import load_bundle
from edge.designs import DesignGenerator

DEFAULT = Path(__file__).resolve().parents[2] / "models" / "default"
CLASSES = ["dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes", "shorts", "skirt", "t-shirt"]
EDGE_TPU_WEIGHT_CACHE_BYTES = 8 * 1024 * 1024  # the Edge TPU keeps about 8 MB of weights on chip


def test_default_bundle_verifies_and_fits_the_budgets() -> None:
    bundle = load_bundle(DEFAULT)  # format, fields, size and sha256 of every file
    assert bundle.quantization == "int8" and bundle.preset == "edge" and bundle.size_px == 128
    assert bundle.conditional and list(bundle.class_names) == CLASSES  # the kiosk's class chips work out of the box
    files = bundle.manifest["files"]
    assert sum(f["bytes"] for f in files.values()) <= EDGE_TPU_WEIGHT_CACHE_BYTES
    assert all(f["bytes"] <= EDGE_TPU_WEIGHT_CACHE_BYTES / 4 for f in files.values())  # each model alone: ~1.6 MB
    assert bundle.manifest["parity"]["passed"] and bundle.manifest["parity"]["worst_psnr_db"] >= 30


def test_the_committed_models_lint_clean_for_the_edge_tpu_when_linted_again() -> None:
    """The lint is run again on the committed .tflite files, not read back from the manifest."""
    from trainer.edgetpu_lint import lint_model

    bundle = load_bundle(DEFAULT)
    for model in bundle.models.values():
        lint = lint_model(DEFAULT / model.file)
        assert lint["edgetpu_ready"] and not lint["issues"], (model.file, lint["issues"])
        assert set(lint["ops"]) == {"CONCATENATION", "CONV_2D", "FULLY_CONNECTED", "RESHAPE",
                                    "RESIZE_NEAREST_NEIGHBOR", "TANH"}
        assert lint["float_tensors"] == 0 and lint["dynamic_tensors"] == 0
        assert lint == bundle.manifest["edgetpu_lint"]["models"][model.file]  # and the manifest tells the truth


def test_the_committed_batch_models_agree_and_make_pictures_on_this_machine() -> None:
    """Parity measured again on the committed .tflite files: the batch-8 model against the batch-1 model on the
    same latents, within the manifest's floor, and neither draws flat pictures (the hot-swap verifier's check).
    The float generator it was exported from is not committed, so parity against it is the manifest's record."""
    from edge.kiosk.hot_swap import verify_bundle

    verified = verify_bundle(DEFAULT)
    assert verified.report["floor_db"] == load_bundle(DEFAULT).manifest["parity"]["min_psnr_db"]
    assert verified.report["batch_psnr_db"] and min(verified.report["batch_psnr_db"].values()) >= 30


def test_default_manifest_records_how_it_was_made_and_how_good_it_is() -> None:
    manifest = load_bundle(DEFAULT).manifest
    summary = manifest["training"]["summary"]
    assert summary["command"][:2] == ["atelier", "train"] and "--preset" in summary["command"]
    assert summary["steps"] > 1000 and summary["wall_s"] > 600 and summary["data"]["n_images"] == 3068
    assert manifest["export"]["command"][:2] == ["atelier", "export"]
    evaluation = manifest["evaluation"]
    assert set(evaluation) == {"float", "int8"}
    for key, numbers in evaluation.items():
        assert numbers["command"][:2] == ["atelier", "evaluate"] and "--record" in numbers["command"], key
        assert numbers["latents"]["n"] >= 1000, key
        designs, floor = numbers["rows"]["designs"], numbers["rows"]["heldout"]
        for metric in ("fcd", "kid", "precision", "recall"):
            assert np.isfinite(designs[metric]["value"]) and designs[metric]["spread"] >= 0, (key, metric)
        # A trained model: well away from noise, and not below what real photos score.
        assert floor["fcd"]["value"] < designs["fcd"]["value"] < 10, key
        assert numbers["novelty"]["share_closer"]["value"] < 0.5, key  # it does not copy its training photos
        # Class by class, the garment network names the designs as the class asked for at least 0.6 times as often
        # as it names held-out photos of that class correctly.
        accuracy = numbers["class_accuracy"]
        assert set(accuracy["share_of_heldout_accuracy"]) == set(CLASSES), key
        assert min(accuracy["share_of_heldout_accuracy"].values()) >= 0.6, (key, accuracy["share_of_heldout_accuracy"])
        assert numbers["two_sample"]["accuracy"] is not None and numbers["spectrum"] and numbers["diversity"], key
    # int8 costs little: FCD within 15 % of the float generator on the same latents.
    fcd_float = evaluation["float"]["rows"]["designs"]["fcd"]["value"]
    fcd_int8 = evaluation["int8"]["rows"]["designs"]["fcd"]["value"]
    assert evaluation["float"]["latents"] == evaluation["int8"]["latents"]
    assert abs(fcd_int8 - fcd_float) <= 0.15 * fcd_float


def test_default_bundle_makes_varied_designs_without_tensorflow_parts() -> None:
    bundle = load_bundle(DEFAULT)
    gen = DesignGenerator(bundle, batch=1)
    classes = None if bundle.class_names is None else [0, 1, 2, 3]
    designs = gen.generate(gen.sample_latents(4, 7), classes)
    assert designs.shape == (4, 128, 128, 3) and designs.dtype == np.uint8
    assert len({d.tobytes() for d in designs}) == 4
    assert all(d.std() > 10 for d in designs)  # pictures, not flat grey


def test_default_bundle_has_an_inspire_encoder_within_its_budgets() -> None:
    from edge.inspire import PhotoEncoder
    from edge.procedural_garments import render_garment

    bundle = load_bundle(DEFAULT)
    assert bundle.encoder is not None, bundle.encoder_error
    entry = bundle.manifest["encoder"]
    total = sum(f["bytes"] for f in bundle.manifest["files"].values()) + entry["bytes"]
    assert total <= EDGE_TPU_WEIGHT_CACHE_BYTES  # generators and encoder together
    assert entry["macs"] <= 300_000_000 and entry["edgetpu_lint"]["edgetpu_ready"]
    assert entry["parity"]["passed"] and entry["training"]["command"][:2] == ["atelier", "train-encoder"]
    assert entry["training"]["generator"]["kind"] == "bundle"  # trained from the committed int8 bundle alone
    rgb = render_garment("t-shirt", 160, np.random.default_rng(0), pattern="plain", colour=(30, 60, 170))
    encoding = PhotoEncoder(bundle, num_threads=1).encode(np.ascontiguousarray(rgb[:, :, ::-1]))
    assert encoding.z.shape == (128,) and np.isfinite(encoding.z).all()
    assert encoding.class_id is not None and 0 <= encoding.class_id < len(CLASSES)


def test_default_bundle_has_a_learned_upscaler_sharper_than_bilinear() -> None:
    """The 256 px path: the committed upscaler, linted again, within the 1.5 GMAC of a 256 px design with the
    generator, and its record beating the bilinear kernel on held-out photos (bench/upscale.py measures it again)."""
    from edge.upscaler import load_upscaler
    from trainer.edgetpu_lint import lint_model
    from trainer.upscaler import UPSCALER_FILE

    bundle = load_bundle(DEFAULT)
    entry = bundle.manifest["upscaler"]
    lint = lint_model(DEFAULT / UPSCALER_FILE)
    assert lint["edgetpu_ready"] and not lint["issues"] and lint["float_tensors"] == 0
    from trainer.config import TrainConfig
    from trainer.networks import build_generator, generator_macs

    g_macs = generator_macs(build_generator(TrainConfig.from_json(bundle.manifest["training"]["config"])))
    assert entry["macs"] + g_macs <= 1_500_000_000  # the 256 px path's budget
    total = sum(f["bytes"] for f in bundle.manifest["files"].values()) + bundle.manifest["encoder"]["bytes"] \
        + entry["bytes"]
    assert total <= EDGE_TPU_WEIGHT_CACHE_BYTES
    assert entry["parity"]["passed"] and entry["training"]["command"][:2] == ["atelier", "train-upscaler"]
    versus = entry["versus_bilinear"]
    assert versus["n_photos"] >= 50 and versus["psnr_db"]["ours"] > versus["psnr_db"]["bilinear"] + 0.5
    assert versus["sharpness"]["ours"] > 1.2 * versus["sharpness"]["bilinear"]
    upscaler, why = load_upscaler(bundle)
    assert upscaler is not None, why
    design = DesignGenerator(bundle, batch=1).generate(np.zeros((1, bundle.z_dim), np.float32))[0]
    assert upscaler.upscale2x(design).shape == (256, 256, 3)


def test_the_default_ships_its_float_weights_and_a_fresh_clone_fine_tunes_it(tmp_path: Path) -> None:
    """`atelier finetune --from models/default` on the committed float weights: a few steps on captures of a class
    the model has and one it lacks (the new class is appended), no export."""
    import json

    from test_finetune import capture_store

    from atelier.cli import main as atelier_main
    from trainer.float_weights import resolve_finetune_source, verify_float_weights

    manifest = load_bundle(DEFAULT).manifest
    weights = resolve_finetune_source(DEFAULT)
    assert weights == (DEFAULT / manifest["training"]["float_weights"]).resolve()
    info = verify_float_weights(weights)  # present and the same bytes as exported
    assert info["checkpoint"]["bytes"] <= 25 * 10**6 and info["checkpoint"]["sha256"] == \
        manifest["training"]["float_weights_sha256"]
    assert info["step"] == manifest["training"]["summary"]["steps"]  # the weights the bundle was exported from
    config = json.loads((weights / "config.json").read_text())
    assert config["class_names"] == CLASSES and config == {**manifest["training"]["config"], "data_dir": ""}
    store = capture_store(tmp_path / "captures", {"dress": 3, "coat": 3})
    out = tmp_path / "shop1"
    assert atelier_main(["finetune", "--from", str(DEFAULT), "--captures", str(store), "--out", str(out),
                         "--steps", "2", "--batch-size", "4", "--eval-n", "4", "--no-export", "--no-progress"]) == 0
    report = json.loads((out / "finetune.json").read_text())
    assert report["freeze_d"]["from_checkpoint"] and report["classes"]["new"] == ["coat"]
    assert report["classes"]["model_after"] == [*CLASSES, "coat"]

"""`atelier evaluate` on real tiny runs and bundles, with the shipped feature network and synthetic garments."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atelier.cli import main
from edge.errors import UserError
from trainer import evaluate as ev
from trainer.features import load_feature_net

N = 48  # designs per test evaluation: enough for the k = 3 neighbourhoods, small enough for 2 cores


@pytest.fixture(scope="module")
def features():
    return load_feature_net()


@pytest.fixture(scope="module")
def run_result(tiny_run: Path, garment_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("eval-run")
    return ev.evaluate(tiny_run, garment_dir, ev.EvalOptions(n=N, seed=5), out_dir=out)


def _value(row: dict, key: str) -> float:
    return row[key]["value"]


def test_run_evaluation_has_every_metric_with_a_spread(run_result: dict):
    rows = run_result["rows"]
    # 24 garments per class, 20 % of each held out: 5 per class.
    assert run_result["data"]["n_heldout"] == 15
    assert run_result["data"]["n_train"] == 57
    assert rows["designs"]["n"] == N
    assert rows["heldout"]["n"] == 15
    assert rows["designs_matched"]["n"] == 15  # the designs row again at the floor's sample size
    assert rows["designs_vs_heldout"]["n"] == N and rows["train_vs_heldout"]["n"] == 57  # against the 15 held out
    for row in rows.values():
        for key in ("fcd", "kid", "precision", "recall"):
            assert np.isfinite(row[key]["value"]) and row[key]["spread"] >= 0, (key, row[key])
            assert row[key]["spread_kind"]
        assert 0.0 <= _value(row, "precision") <= 1.0
        assert 0.0 <= _value(row, "recall") <= 1.0
    assert run_result["class_accuracy"] is None  # unconditional
    # The fixture run trained on the same folder, so its held-out split was seen in training: say so.
    assert run_result["data"]["heldout_seen_in_training"] is True


def test_a_two_epoch_generator_is_far_from_the_real_floor(run_result: dict):
    rows = run_result["rows"]
    # Held-out garments are closer to the training garments than blobs from a 2-epoch tiny GAN.
    assert _value(rows["heldout"], "fcd") < _value(rows["designs_matched"], "fcd")
    assert _value(rows["heldout"], "kid") < _value(rows["designs"], "kid")
    # ... and, against the held-out garments, than the training garments are.
    assert _value(rows["train_vs_heldout"], "kid") < _value(rows["designs_vs_heldout"], "kid")
    assert _value(rows["train_vs_heldout"], "fcd") < _value(rows["designs_vs_heldout"], "fcd")


def test_evaluation_json_and_contact_sheet_are_written(run_result: dict):
    saved = json.loads(Path(run_result["files"]["json"]).read_text())
    assert saved["rows"]["designs"]["fcd"] == run_result["rows"]["designs"]["fcd"]
    nov = saved["novelty"]
    assert len(nov["nearest"]) == N
    assert len(nov["closest"]) == 16
    distances = [c["distance"] for c in nov["closest"]]
    assert distances == sorted(distances)
    assert all(Path(c["train_file"]).is_file() for c in nov["closest"])
    assert 0.0 <= nov["share_closer"]["value"] <= 1.0
    with Image.open(run_result["files"]["contact_sheet"]) as sheet:
        assert sheet.mode == "RGB"
        assert sheet.width >= 4 * 2 * 96  # 4 pairs across, pictures zoomed to at least 96 px
        assert sheet.height >= 4 * 96


def test_planted_training_photo_is_flagged_with_real_features(garment_dir: Path, features):
    real = ev.load_real(garment_dir, 32, None)
    evaluator = ev.Evaluator(features, real)
    designs = real.heldout.copy()  # photos the training split lacks...
    designs[3] = real.train[10]  # ...and one that is a training photo
    result = evaluator.measure(designs, contact_pairs=4)
    nov = result["novelty"]
    assert nov["closest"][0]["design"] == 3
    assert nov["closest"][0]["train_index"] == 10
    assert nov["closest"][0]["distance"] == pytest.approx(0.0, abs=1e-3)
    assert nov["closest"][0]["flagged"]
    assert 3 in nov["flagged"]
    sheet = ev.contact_sheet(designs, real.train, nov["closest"])
    assert sheet.dtype == np.uint8 and sheet.ndim == 3


def test_bundle_and_run_draw_the_same_designs(tiny_run: Path, tiny_bundle: Path):
    run = ev.open_model(tiny_run)
    bundle = ev.open_model(tiny_bundle, n=16)
    a, _ = ev.make_designs(run, 16, seed=2, classes=["dress"])
    b, _ = ev.make_designs(bundle, 16, seed=2, classes=["dress"])
    other, _ = ev.make_designs(run, 16, seed=3, classes=["dress"])
    int8_error = np.abs(a.astype(int) - b.astype(int)).mean()
    seed_change = np.abs(a.astype(int) - other.astype(int)).mean()
    assert int8_error < 0.5 * seed_change


def test_bundle_evaluation_is_written_beside_the_bundle(tiny_bundle: Path, garment_dir: Path):
    result = ev.evaluate(tiny_bundle, garment_dir, ev.EvalOptions(n=N, seed=5, novelty=False))
    out = tiny_bundle.parent / f"{tiny_bundle.name}-evaluation"
    assert Path(result["files"]["json"]) == out / ev.EVALUATION_FILE
    assert result["model"]["kind"] == "bundle" and result["model"]["quantization"] == "int8"
    assert result["novelty"] is None and "contact_sheet" not in result["files"]
    assert result["rows"]["designs"]["n"] == N


def test_conditional_run_reports_class_accuracy(tiny_conditional_run: Path, garment_dir: Path, tmp_path: Path):
    result = ev.evaluate(tiny_conditional_run, garment_dir, ev.EvalOptions(n=N, novelty=False), out_dir=tmp_path)
    acc = result["class_accuracy"]
    assert set(acc["per_class"]) == {"dress", "t-shirt", "trousers"}
    assert acc["aliases"] == {"trousers": "pants"}
    assert acc["unknown_classes"] == []
    assert 0.0 <= acc["designs"]["value"] <= 1.0
    assert 0.0 <= acc["heldout"]["value"] <= 1.0
    assert result["latents"]["classes"] == ["dress", "t-shirt", "trousers"]
    # Per class: held-out accuracy of that class's photos, and the designs' share as a fraction of it.
    held = acc["heldout_per_class"]
    assert set(held) == {"dress", "t-shirt", "trousers"}
    assert all(0.0 <= v["value"] <= 1.0 for v in held.values())
    ratios = acc["share_of_heldout_accuracy"]
    assert set(ratios) == {n for n in acc["per_class"] if held[n]["value"] > 0} and ratios
    for name, ratio in ratios.items():
        assert ratio == pytest.approx(acc["per_class"][name]["value"] / held[name]["value"], abs=1e-4)


def test_conditional_bundle_is_asked_for_each_class(tiny_conditional_bundle: Path, garment_dir: Path,
                                                    tmp_path: Path):
    result = ev.evaluate(tiny_conditional_bundle, garment_dir, ev.EvalOptions(n=24, novelty=False), out_dir=tmp_path)
    assert result["model"]["kind"] == "bundle" and result["model"]["conditional"]
    assert set(result["class_accuracy"]["per_class"]) == {"dress", "t-shirt", "trousers"}


def test_conditional_run_with_one_class(tiny_conditional_run: Path, garment_dir: Path, tmp_path: Path):
    result = ev.evaluate(tiny_conditional_run, garment_dir, ev.EvalOptions(n=16, classes=["dress"], novelty=False),
                         out_dir=tmp_path)
    assert result["data"]["classes"] == ["dress"]
    assert set(result["class_accuracy"]["per_class"]) == {"dress"}


def test_validation_folder_is_the_held_out_split(tmp_path: Path):
    from edge.procedural_garments import write_dataset

    write_dataset(tmp_path / "train", n_per_class=8, size_px=40, seed=1, kinds=("dress", "t-shirt"))
    write_dataset(tmp_path / "validation", n_per_class=5, size_px=40, seed=2, kinds=("dress", "t-shirt"))
    for data in (tmp_path, tmp_path / "train"):
        real = ev.load_real(data, 32, ["dress", "t-shirt"])
        assert real.heldout_from_validation
        assert (len(real.train), len(real.heldout)) == (16, 10)
        assert all("/train/" in f for f in real.train_files)


def test_cli_prints_the_table(tiny_run: Path, garment_dir: Path, tmp_path: Path, capsys):
    code = main(["evaluate", str(tiny_run), "--data", str(garment_dir), "--n", "24", "--out", str(tmp_path)])
    assert code == 0
    text = capsys.readouterr().out
    assert "held-out photos (floor)" in text
    assert "FCD" in text and "KID" in text
    assert "novelty" in text
    assert (tmp_path / ev.EVALUATION_FILE).is_file()
    assert (tmp_path / ev.CONTACT_SHEET_FILE).is_file()


@pytest.mark.parametrize(
    "argv_extra, message",
    [
        (["--n", "2"], "--n must be at least"),
        (["--seed", "-1"], "--seed"),
        (["--classes", "hat"], "hat"),
        (["--snapshot", "7"], "no snapshot of epoch 7"),
        (["--snapshot", "last"], "epoch number"),
    ],
)
def test_cli_refuses_bad_arguments(tiny_run: Path, garment_dir: Path, tmp_path: Path, argv_extra, message, caplog):
    code = main(["evaluate", str(tiny_run), "--data", str(garment_dir), "--out", str(tmp_path / "o"), *argv_extra])
    assert code == 2
    assert message in caplog.text
    assert not (tmp_path / "o").exists()


def test_refuses_a_folder_that_is_no_model(tmp_path: Path, garment_dir: Path):
    with pytest.raises(UserError, match=r"neither config\.json"):
        ev.evaluate(tmp_path, garment_dir, ev.EvalOptions(n=8))
    with pytest.raises(UserError, match="not a folder"):
        ev.evaluate(tmp_path / "missing", garment_dir, ev.EvalOptions(n=8))


def test_refuses_bad_data(tiny_run: Path, tmp_path: Path):
    from edge.procedural_garments import write_dataset

    with pytest.raises(UserError, match="not a folder"):
        ev.evaluate(tiny_run, tmp_path / "nothing", ev.EvalOptions(n=8), out_dir=tmp_path / "o")
    few = write_dataset(tmp_path / "few", n_per_class=3, size_px=40, seed=1)
    with pytest.raises(UserError, match="held-out photos"):
        ev.evaluate(tiny_run, few, ev.EvalOptions(n=8), out_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_refuses_an_out_path_that_is_a_file(tiny_run: Path, garment_dir: Path, tmp_path: Path):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    with pytest.raises(UserError, match="is a file"):
        ev.evaluate(tiny_run, garment_dir, ev.EvalOptions(n=8), out_dir=target)
    assert target.read_text() == "not a folder"


def test_refuses_a_missing_or_damaged_feature_network(tiny_run: Path, garment_dir: Path, tmp_path: Path):
    import shutil

    from trainer.features import CARD_FILE, feature_dir

    with pytest.raises(UserError, match="no feature network"):
        ev.evaluate(tiny_run, garment_dir, ev.EvalOptions(n=8, features_dir=tmp_path / "none"))
    damaged = tmp_path / "damaged"
    shutil.copytree(feature_dir(), damaged)
    card = json.loads((damaged / CARD_FILE).read_text())
    card["sha256"] = "0" * 64
    (damaged / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(UserError, match="does not match the sha256"):
        load_feature_net(damaged)


def _bundle_copy(bundle: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(bundle, tmp_path / "bundle"))


def test_record_writes_int8_and_float_numbers_into_the_manifest(tiny_run: Path, tiny_bundle: Path,
                                                                 garment_dir: Path, tmp_path: Path, capsys):
    from edge.bundle import load_bundle

    bundle = _bundle_copy(tiny_bundle, tmp_path)
    before = load_bundle(bundle).model_id
    argv = ["--data", str(garment_dir), "--n", "24", "--seed", "3"]
    assert main(["evaluate", str(bundle), *argv, "--out", str(tmp_path / "e8"), "--record"]) == 0
    assert "recorded as evaluation.int8" in capsys.readouterr().out
    assert main(["evaluate", str(tiny_run), *argv, "--out", str(tmp_path / "ef"), "--record", str(bundle)]) == 0
    assert "recorded as evaluation.float" in capsys.readouterr().out
    loaded = load_bundle(bundle)  # still verifies: files re-hashed, manifest valid
    assert loaded.model_id != before  # the numbers are part of what the bundle is
    recorded = loaded.manifest["evaluation"]
    assert set(recorded) == {"int8", "float"}
    for key, out in (("int8", "e8"), ("float", "ef")):
        full = json.loads((tmp_path / out / ev.EVALUATION_FILE).read_text())
        assert recorded[key]["rows"]["designs"] == full["rows"]["designs"]
        assert recorded[key]["rows"]["heldout"] == full["rows"]["heldout"]
        assert recorded[key]["novelty"]["share_closer"] == full["novelty"]["share_closer"]
        for what in ("two_sample", "spectrum", "diversity"):  # what a person sees is recorded too
            assert recorded[key][what] == full[what]
        assert recorded[key]["latents"] == full["latents"] and full["latents"]["n"] == 24
        assert recorded[key]["command"][:2] == ["atelier", "evaluate"] and "--record" in recorded[key]["command"]
    assert recorded["int8"]["model"]["quantization"] == "int8"
    assert recorded["float"]["model"]["kind"] == "run"


def test_record_refuses_a_bundle_of_another_run_or_a_damaged_one(tiny_conditional_run: Path, tiny_bundle: Path,
                                                                  tiny_run: Path, garment_dir: Path,
                                                                  tmp_path: Path, caplog):
    bundle = _bundle_copy(tiny_bundle, tmp_path)
    manifest = (bundle / "manifest.json").read_bytes()
    argv = ["--data", str(garment_dir), "--n", "24"]
    # The float numbers of a run the bundle was not exported from.
    assert main(["evaluate", str(tiny_conditional_run), *argv, "--out", str(tmp_path / "o1"),
                 "--record", str(bundle)]) == 2
    assert "was not exported from" in caplog.text
    # --record without a bundle to record in.
    assert main(["evaluate", str(tiny_run), *argv, "--out", str(tmp_path / "o2"), "--record"]) == 2
    assert "name the bundle exported from it" in caplog.text
    # A folder that is no bundle, and a bundle whose model file is damaged: refused before evaluating.
    assert main(["evaluate", str(tiny_run), *argv, "--out", str(tmp_path / "o3"), "--record", str(tmp_path)]) == 2
    model = next(bundle.glob("*.tflite"))
    model.write_bytes(model.read_bytes()[:-10] + b"0123456789")
    assert main(["evaluate", str(tiny_run), *argv, "--out", str(tmp_path / "o4"), "--record", str(bundle)]) == 2
    assert "--record:" in caplog.text and "sha256" in caplog.text
    assert not (tmp_path / "o3").exists() and not (tmp_path / "o4").exists()
    assert (bundle / "manifest.json").read_bytes() == manifest  # nothing was written into it

"""The realism recipe's ingredients (edge2 preset, `atelier train --set`): bilinear upsampling, hinge loss,
skip-layer excitation and wider blocks build, train, export int8 with a clean Edge TPU lint, and stay in budget."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from atelier.cli import main
from edge.errors import UserError
from trainer.config import parse_setting, preset
from trainer.networks import build_generator, generator_macs


def test_edge2_is_within_the_design_budget_and_has_its_ingredients() -> None:
    cfg = preset("edge2", size_px=128)
    g = build_generator(cfg)
    macs = generator_macs(g)
    assert macs <= 1_000_000_000
    assert macs > generator_macs(build_generator(preset("edge", size_px=128)))  # wider high-resolution blocks
    ups = [layer for layer in g.layers if isinstance(layer, keras.layers.UpSampling2D)]
    assert ups and all(layer.interpolation == "bilinear" for layer in ups)
    gates = [layer.name for layer in g.layers if isinstance(layer, keras.layers.Multiply)]
    assert gates == ["sle8_64_excite", "sle16_128_excite"]
    assert cfg.loss == "hinge"


def test_skip_excitation_gates_lie_between_zero_and_one() -> None:
    cfg = preset("edge2", size_px=64)
    g = build_generator(cfg)
    gate = keras.Model(g.inputs, g.get_layer("sle8_64_gate").output)
    values = np.asarray(gate(np.random.default_rng(0).standard_normal((4, cfg.z_dim)).astype("float32")))
    assert values.shape == (4, 1, 1, cfg.g_channels[64])
    assert (values > 0).all() and (values < 1).all()


@pytest.mark.parametrize(("text", "expected"), [
    ("upsample=bilinear", ("upsample", "bilinear")),
    ("loss=hinge", ("loss", "hinge")),
    ("skip-excitation=true", ("skip_excitation", True)),
    ("lr_g=2e-4", ("lr_g", 2e-4)),
    ('g_channels={"64": 48, "128": 24}', ("g_channels", {64: 48, 128: 24})),
])
def test_settings_parse(text: str, expected: tuple) -> None:
    assert parse_setting(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("upsample", "FIELD=VALUE"),
    ("colour=red", "no such setting"),
    ("skip_excitation=maybe", "true or false"),
    ("lr_g=fast", "a number"),
    ("g_channels=[1,2]", "JSON object"),
    ('g_channels={"64": "wide"}', "whole numbers"),
])
def test_bad_settings_are_user_errors(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_setting(text)


def test_partial_widths_merge_and_bad_values_are_refused() -> None:
    cfg = preset("edge", g_channels={128: 24})
    assert cfg.g_channels[128] == 24 and cfg.g_channels[64] == 32
    with pytest.raises(UserError, match="upsample must be"):
        preset("edge", upsample="cubic")
    with pytest.raises(UserError, match="loss must be"):
        preset("edge", loss="wasserstein")
    with pytest.raises(UserError, match="transposed"):
        preset("seed", upsample="bilinear")


def test_the_recipe_trains_and_exports_to_an_edge_tpu_clean_int8_bundle(tmp_path: Path) -> None:
    from edge.procedural_garments import write_dataset

    data = write_dataset(tmp_path / "data", n_per_class=12, size_px=64, seed=3)
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    code = main(["train", "--data", str(data), "--out", str(run), "--preset", "tiny", "--size", "64", "--epochs",
                 "1", "--set", "upsample=bilinear", "--set", "skip_excitation=true", "--set", "loss=hinge",
                 "--no-progress"])
    assert code == 0
    config = json.loads((run / "config.json").read_text())
    assert (config["upsample"], config["loss"], config["skip_excitation"]) == ("bilinear", "hinge", True)
    losses = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert losses and all(np.isfinite(row["d_loss"]) and np.isfinite(row["g_loss"]) for row in losses)
    assert main(["export", str(run), "--out", str(bundle), "--force", "--no-edgetpu-compiler"]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    for report in manifest["edgetpu_lint"]["models"].values():
        assert report["issues"] == [] and report["edgetpu_ready"]
        assert report["ops"].get("RESIZE_BILINEAR", 0) == 4  # one per block: 4 -> 8 -> 16 -> 32 -> 64 px
        assert "RESIZE_NEAREST_NEIGHBOR" not in report["ops"]
        assert {"MEAN", "LOGISTIC", "MUL"} <= set(report["ops"])
    assert manifest["parity"]["passed"]


def test_set_is_refused_with_resume(tmp_path: Path, caplog) -> None:
    assert main(["train", "--out", str(tmp_path / "r"), "--resume", "--set", "loss=hinge"]) == 2
    assert "--set changes a new run" in caplog.text

"""`atelier export`: int8/fp16/fp32 bundles of real tiny runs, checked against the float Keras generator."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from atelier.cli import main as atelier
from edge.bundle import load_bundle
from edge.designs import DesignGenerator
from edge.errors import UserError
from trainer.export import ExportOptions, ExportResult, export_bundle, parse_batches
from trainer.run_folder import load_generator, to_uint8

# Ops a static, BN-folded, fully int8 generator graph must not contain.
DYNAMIC_OPS = {"SHAPE", "PACK", "STRIDED_SLICE"}
UNFOLDED_BN_OPS = {"MUL", "ADD"}


def graph_ops(path: Path) -> list[str]:
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    return [op["op_name"] for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]


def keras_designs(run_dir: Path, z: np.ndarray, class_ids: np.ndarray | None = None) -> np.ndarray:
    """The float generator's designs, postprocessed by the trainer's own to_uint8."""
    model = load_generator(run_dir)
    feed = {"z": z}
    if class_ids is not None:
        feed["class_onehot"] = np.eye(model.inputs[1].shape[-1], dtype=np.float32)[class_ids]
    return to_uint8(np.asarray(model(feed, training=False)))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def test_int8_bundle_is_static_fully_int8_and_matches_keras(tiny_bundle: Path, tiny_run: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    manifest = bundle.manifest
    assert manifest["quantization"] == "int8"
    for batch, entry in bundle.models.items():
        ops = graph_ops(bundle.model_path(batch))
        assert "CONV_2D" in ops and "TANH" in ops
        assert not DYNAMIC_OPS & set(ops), ops
        assert not UNFOLDED_BN_OPS & set(ops), ops  # every BatchNorm folded into its conv/dense
        assert {"QUANTIZE", "DEQUANTIZE", "TILE"}.isdisjoint(ops), ops  # int8 end to end, resize not tile
        (z_in,) = entry.inputs
        assert (z_in.name, z_in.dtype, z_in.shape) == ("z", "int8", (batch, bundle.z_dim))
        assert entry.output.dtype == "int8"
        assert entry.output.scale == pytest.approx(1 / 128) and entry.output.zero_point == 0  # the TANH spec
    # Parity measured here, on latents the exporter never saw, against the trainer's own postprocessing.
    z = np.random.default_rng(99).standard_normal((64, bundle.z_dim)).astype(np.float32)
    reference = keras_designs(tiny_run, z)
    for batch in bundle.batches:
        images = DesignGenerator(bundle, batch=batch).generate(z)
        assert psnr(reference, images) >= 20.0
    # The manifest carries the exporter's own report, the training summary and the lint.
    parity = manifest["parity"]
    assert parity["passed"] and parity["n_latents"] == 256 and parity["worst_psnr_db"] >= 20.0
    assert set(parity["models"]) == {"generator_b1.tflite", "generator_b8.tflite"}
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert manifest["training"]["summary"]["steps"] == summary["steps"]
    from trainer.portable_paths import portable_path

    # The same data, named without the machine's paths (trainer/portable_paths.py).
    assert manifest["training"]["summary"]["data"] == {**summary["data"], "dir": portable_path(summary["data"]["dir"])}
    assert manifest["export"]["command"] == ["pytest-fixture"]
    assert manifest["export"]["graph"]["unfolded_batchnorm"] == []
    assert manifest["edgetpu_lint"]["models"]["generator_b1.tflite"]["edgetpu_ready"] is True


@pytest.fixture(scope="module")
def float_bundles(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, ExportResult]]:
    """fp16 and fp32 bundles (batch 2) of the tiny run, with their export results."""
    out = {}
    for fmt in ("fp16", "fp32"):
        path = tmp_path_factory.mktemp("float") / fmt
        out[fmt] = (path, export_bundle(tiny_run, path, ExportOptions(fmt=fmt, batches=(2,))))
    return out


@pytest.mark.parametrize("fmt", ["fp16", "fp32"])
def test_float_exports_match_keras_closely(
    float_bundles: dict[str, tuple[Path, ExportResult]], tiny_run: Path, fmt: str
) -> None:
    out, result = float_bundles[fmt]
    bundle = load_bundle(out)
    assert bundle.quantization == fmt and bundle.batches == (2,)
    entry = bundle.models[2]
    assert entry.inputs[0].dtype == "float32" and entry.inputs[0].scale is None
    assert entry.output.dtype == "float32"
    ops = graph_ops(bundle.model_path(2))
    assert not DYNAMIC_OPS & set(ops) and not UNFOLDED_BN_OPS & set(ops), ops
    z = np.random.default_rng(5).standard_normal((16, bundle.z_dim)).astype(np.float32)
    images = DesignGenerator(bundle, batch=2).generate(z)
    assert psnr(keras_designs(tiny_run, z), images) >= 40.0
    assert result.parity["passed"]
    # The float model is not for the Edge TPU, and the lint says why.
    lint = result.lint["models"]["generator_b2.tflite"]
    assert not lint["edgetpu_ready"] and lint["float_tensors"] > 0


def test_fp16_is_smaller_than_fp32(float_bundles: dict[str, tuple[Path, ExportResult]]) -> None:
    fp16, fp32 = ((float_bundles[f][0] / "generator_b2.tflite").stat().st_size for f in ("fp16", "fp32"))
    assert fp16 < 0.8 * fp32


def test_conditional_bundle_takes_z_then_class(tiny_conditional_bundle: Path, tiny_conditional_run: Path) -> None:
    config = json.loads((tiny_conditional_run / "config.json").read_text())
    bundle = load_bundle(tiny_conditional_bundle)
    assert bundle.class_names == tuple(config["class_names"])
    for batch, entry in bundle.models.items():
        names = [t.name for t in entry.inputs]
        assert names == ["z", "class_onehot"]
        assert entry.inputs[1].shape == (batch, len(bundle.class_names))
        assert not DYNAMIC_OPS & set(graph_ops(bundle.model_path(batch)))
    z = np.random.default_rng(3).standard_normal((24, bundle.z_dim)).astype(np.float32)
    ids = np.arange(24) % len(bundle.class_names)
    images = DesignGenerator(bundle, batch=8).generate(z, ids)
    assert psnr(keras_designs(tiny_conditional_run, z, ids), images) >= 20.0
    # The class input matters: the same latents drawn as another class give other pictures.
    other = DesignGenerator(bundle, batch=8).generate(z, (ids + 1) % len(bundle.class_names))
    assert not np.array_equal(images, other)


def test_parity_floor_refuses_and_writes_nothing_unless_forced(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with pytest.raises(UserError, match=r"fails parity.*--force"):
        export_bundle(tiny_run, out, ExportOptions(batches=(1,), min_psnr_db=150.0))
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder left behind
    result = export_bundle(tiny_run, out, ExportOptions(batches=(1,), min_psnr_db=150.0, force=True))
    parity = load_bundle(out).manifest["parity"]
    assert parity == result.parity
    assert parity["passed"] is False and parity["forced"] is True and parity["min_psnr_db"] == 150.0


def test_export_refuses_bad_runs_and_options(tiny_run: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        export_bundle(tmp_path / "no-run", tmp_path / "b")
    half_run = tmp_path / "half-run"
    half_run.mkdir()
    for name in ("config.json", "summary.json"):
        (half_run / name).write_bytes((tiny_run / name).read_bytes())
    with pytest.raises(UserError, match=r"generator\.keras is missing"):
        export_bundle(half_run, tmp_path / "b")
    with pytest.raises(UserError, match="--format"):
        export_bundle(tiny_run, tmp_path / "b", ExportOptions(fmt="int4"))
    with pytest.raises(UserError, match="inside the run folder"):
        export_bundle(tiny_run, tiny_run / "bundle")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not empty"):
        export_bundle(tiny_run, taken)
    with pytest.raises(UserError, match="not a bundle folder"):
        export_bundle(tiny_run, taken, ExportOptions(overwrite=True))
    assert (taken / "notes.txt").read_text() == "keep me"
    for text in ("", "0", "a,b", "1,1", "1,-8", "9999"):
        with pytest.raises(UserError, match="--batch"):
            parse_batches(text)
    assert parse_batches("8, 1") == (1, 8)


def test_exported_bundle_mode_lets_other_users_read_it(tiny_bundle: Path) -> None:
    # The kiosk's service user is not the user who exported (root, a technician): the folder and its files
    # must be readable by others, not the 0700 of the staging folder they were made in.
    assert tiny_bundle.stat().st_mode & 0o777 == 0o755
    files = sorted(tiny_bundle.iterdir())
    assert files and {p.name for p in files} >= {"manifest.json", "generator_b1.tflite"}
    assert {p.stat().st_mode & 0o777 for p in files} == {0o644}


def test_overwrite_replaces_a_bundle(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    export_bundle(tiny_run, out, ExportOptions(fmt="fp32", batches=(1,)))
    first = load_bundle(out)
    export_bundle(tiny_run, out, ExportOptions(fmt="fp32", batches=(2,), overwrite=True))
    second = load_bundle(out)
    assert first.batches == (1,) and second.batches == (2,)
    assert not (out / "generator_b1.tflite").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_export_command_line(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli-bundle"
    argv = ["export", str(tiny_run), "--out", str(out), "--format", "int8", "--batch", "1", "--name", "shop"]
    assert atelier(argv) == 0
    bundle = load_bundle(out)
    assert bundle.name == "shop" and bundle.batches == (1,)
    command = bundle.manifest["export"]["command"]
    assert not any(Path(c).is_absolute() for c in command)  # no machine paths: tmp folders are outside the repo
    assert command[2].startswith(".../") and "/tiny (content sha256 " in command[2]
    assert command[:2] + command[3:] == [
        "atelier",
        "export",
        "--out",
        ".../" + "/".join(out.parts[-2:]),
        "--format",
        "int8",
        "--batch",
        "1",
        "--name",
        "shop",
    ]
    assert atelier(["export", str(tiny_run), "--out", str(tmp_path / "x"), "--batch", "0"]) == 2
    assert atelier(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "y")]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()

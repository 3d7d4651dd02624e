"""Graph rewrites before conversion (BatchNorm folding, upsample -> resize) and the Edge TPU lint."""

import os
import stat
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers

from trainer.edgetpu_lint import lint_model, parse_compiler_report, run_edgetpu_compiler
from trainer.export import convert
from trainer.export_graph import prepare_for_tflite

Z_DIM = 8


def randomise_batchnorm(model: keras.Model, seed: int) -> None:
    """Give every BatchNorm trained-looking statistics (at init they are the identity, which hides bugs)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, c),
                    rng.normal(0, 0.2, c),
                    rng.normal(0, 0.5, c),
                    rng.uniform(0.3, 3.0, c),
                ]
            )


def every_kind_of_bn_model() -> keras.Model:
    """Dense->BN, Dense->Reshape->BN, Conv2D->BN, stride-2 Conv2DTranspose->BN, and a BN after a ReLU."""
    z = keras.Input((Z_DIM,), name="z")
    h = layers.Dense(32, use_bias=False)(z)
    h = layers.BatchNormalization(name="bn_dense")(h)
    h = layers.ReLU()(h)
    h = layers.Dense(4 * 4 * 8)(h)
    h = layers.Reshape((4, 4, 8))(h)
    h = layers.BatchNormalization(name="bn_reshape", epsilon=1e-3)(h)
    h = layers.ReLU()(h)
    h = layers.UpSampling2D(2, interpolation="nearest", name="up8")(h)
    h = layers.Conv2D(8, 3, padding="same", use_bias=False)(h)
    h = layers.BatchNormalization(name="bn_conv")(h)
    h = layers.LeakyReLU(0.2)(h)
    h = layers.Conv2DTranspose(6, 5, strides=2, padding="same")(h)
    h = layers.BatchNormalization(name="bn_transpose")(h)
    h = layers.ReLU()(h)
    h = layers.BatchNormalization(name="bn_after_relu")(h)
    h = layers.Conv2D(3, 3, padding="same")(h)
    out = layers.Activation("tanh")(h)
    model = keras.Model(z, out)
    randomise_batchnorm(model, seed=1)
    return model


def test_prepare_folds_batchnorm_and_keeps_the_function() -> None:
    model = every_kind_of_bn_model()
    prepared, report = prepare_for_tflite(model)
    assert sorted(report.folded_batchnorm) == ["bn_conv", "bn_dense", "bn_reshape", "bn_transpose"]
    assert report.unfolded_batchnorm == ["bn_after_relu"]  # nothing linear right before it
    assert report.upsampling_to_resize == ["up8"]
    kinds = [type(layer).__name__ for layer in prepared.layers]
    assert kinds.count("BatchNormalization") == 1 and "UpSampling2D" not in kinds and "NearestResize" in kinds
    z = np.random.default_rng(0).standard_normal((5, Z_DIM)).astype(np.float32)
    want = np.asarray(model(z, training=False))
    got = np.asarray(prepared(z, training=False))
    np.testing.assert_allclose(got, want, atol=2e-5)
    # The original model is untouched (the exporter still uses it as the parity reference).
    np.testing.assert_array_equal(np.asarray(model(z, training=False)), want)


def test_converted_graph_has_no_batchnorm_ops_or_tile() -> None:
    prepared, _ = prepare_for_tflite(every_kind_of_bn_model())
    config = {"z_dim": Z_DIM, "z_distribution": "normal", "conditional": False, "class_names": None}
    model_bytes = convert(prepared, config, batch=1, fmt="fp32")
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    ops = [op["op_name"] for op in interpreter._get_ops_details()]
    # Only the BN after the ReLU may leave a MUL and an ADD; every folded one leaves nothing.
    assert ops.count("MUL") <= 1 and ops.count("ADD") <= 1, ops
    assert "TILE" not in ops and "RESIZE_NEAREST_NEIGHBOR" in ops, ops
    assert not {"SHAPE", "PACK", "STRIDED_SLICE"} & set(ops), ops
    # Inference mode: no BatchNorm statistics updates (variables) in the graph.
    assert not {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "MEAN"} & set(ops), ops


def test_lint_flags_leaky_relu_and_strided_transpose_conv(tmp_path: Path) -> None:
    prepared, _ = prepare_for_tflite(every_kind_of_bn_model())
    config = {"z_dim": Z_DIM, "z_distribution": "normal", "conditional": False, "class_names": None}
    path = tmp_path / "seedlike.tflite"
    path.write_bytes(convert(prepared, config, batch=1, fmt="int8"))
    lint = lint_model(path)
    flagged = {issue["op"] for issue in lint["issues"]}
    assert {"LEAKY_RELU", "TRANSPOSE_CONV"} <= flagged
    assert lint["ops"]["TRANSPOSE_CONV"] == 1 and not lint["edgetpu_ready"]
    assert lint["float_tensors"] == 0 and lint["dynamic_tensors"] == 0  # int8 and static, but still not ready


def test_lint_of_the_tiny_bundle_is_clean(tiny_bundle: Path) -> None:
    lint = lint_model(tiny_bundle / "generator_b1.tflite")
    assert lint["edgetpu_ready"], lint["issues"]
    assert "LEAKY_RELU" not in lint["ops"] and "RESIZE_NEAREST_NEIGHBOR" in lint["ops"]
    assert set(lint["op_versions"]) == set(lint["ops"]) and all(v >= 1 for v in lint["op_versions"].values())
    assert lint["op_versions"]["CONV_2D"] < 6  # int8 per-channel conv, a version Edge TPU Compiler 16 reads


COMPILER_OUTPUT = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 412 ms.

Input model: {model}
Input size: 40.11KiB
Output model: generator_b1_edgetpu.tflite
Number of Edge TPU subgraphs: 1
Total number of operations: 10
Operation log: generator_b1_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU.
Number of operations that will run on Edge TPU: 9
Number of operations that will run on CPU: 1

Operator                       Count      Status

CONV_2D                        4          Mapped to Edge TPU
FULLY_CONNECTED                1          Mapped to Edge TPU
RESIZE_NEAREST_NEIGHBOR        3          Mapped to Edge TPU
TANH                           1          Operation is otherwise supported, but not mapped due to some unspecified limitation
RESHAPE                        1          Mapped to Edge TPU
"""  # noqa: E501 - the compiler's table is wider than our lines


def test_edgetpu_compiler_report_when_the_compiler_is_on_path(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real compiler is an x86 Debian package from Coral's apt repository, unreachable here: a stand-in
    # script checks the arguments we pass and prints a report in the compiler's format.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "edgetpu_compiler"
    text = COMPILER_OUTPUT.replace("{model}", "$4")
    script.write_text(
        f'#!/bin/sh\n[ "$1" = -s ] && [ "$2" = -o ] && [ -d "$3" ] && [ -f "$4" ] || exit 9\n'
        f"cat <<EOF\n{text}EOF\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    report = run_edgetpu_compiler(tiny_bundle / "generator_b1.tflite")
    assert report is not None and report["returncode"] == 0
    assert report["compiler_version"] == "16.0.384591198"
    assert (report["ops_on_edgetpu"], report["ops_on_cpu"]) == (9, 1)
    assert report["operators"][3] == {
        "op": "TANH",
        "count": 1,
        "status": "Operation is otherwise supported, but not mapped due to some unspecified limitation",
    }
    assert [row["op"] for row in report["operators"]] == [
        "CONV_2D",
        "FULLY_CONNECTED",
        "RESIZE_NEAREST_NEIGHBOR",
        "TANH",
        "RESHAPE",
    ]


def test_no_compiler_no_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_bundle: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert run_edgetpu_compiler(tiny_bundle / "generator_b1.tflite") is None
    assert parse_compiler_report("garbage")["operators"] == []

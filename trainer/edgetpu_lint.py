"""Edge TPU lint: which ops a .tflite uses and which of them the Edge TPU compiler is known not to map.

We cannot run a Coral here, so the lint reads the converted graph and flags what the Edge TPU documentation
and issue tracker say will fall back to the CPU or fail to compile: ops outside the supported list (LEAKY_RELU
is the one a DCGAN meets, edgetpu#597), stride-2 TRANSPOSE_CONV (edgetpu#509, #684, #686) and the op version
current converters emit (edgetpu#845), dynamic shapes, float tensors, and parameters beyond the ~8 MB on-chip
cache. When `edgetpu_compiler` is on PATH its own operator report is added.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edge.litert import load_interpreter

log = logging.getLogger(__name__)

# The Edge TPU's supported operations (coral.ai/docs/edgetpu/models-intro/#supported-operations), as TFLite
# builtin names. Anything else runs on the CPU, and so does every op after it.
EDGETPU_OPS: frozenset[str] = frozenset(
    {
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "EXPAND_DIMS",
        "FULLY_CONNECTED",
        "L2_NORMALIZATION",
        "LOGISTIC",
        "LSTM",
        "MAXIMUM",
        "MAX_POOL_2D",
        "MEAN",
        "MINIMUM",
        "MUL",
        "PACK",
        "PAD",
        "PRELU",
        "QUANTIZE",
        "REDUCE_MAX",
        "REDUCE_MIN",
        "RELU",
        "RELU6",
        "RELU_N1_TO_1",
        "RESHAPE",
        "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR",
        "RSQRT",
        "SLICE",
        "SOFTMAX",
        "SPACE_TO_DEPTH",
        "SPLIT",
        "SQUEEZE",
        "STRIDED_SLICE",
        "SUB",
        "SUM",
        "SQUARED_DIFFERENCE",
        "TANH",
        "TRANSPOSE",
        "TRANSPOSE_CONV",
    }
)
# Ops a fixed-batch graph never needs: their presence means a dynamic shape leaked into the model.
DYNAMIC_SHAPE_OPS: frozenset[str] = frozenset({"SHAPE", "PACK", "STRIDED_SLICE", "BROADCAST_TO", "FILL"})
# Why specific ops are a problem, with the issue that reports it.
_REASONS: dict[str, str] = {
    "LEAKY_RELU": "the Edge TPU has no LeakyReLU (google-coral/edgetpu#597): use ReLU",
    "TILE": "TILE is not an Edge TPU op: export rewrites nearest UpSampling2D to RESIZE_NEAREST_NEIGHBOR",
    "DEQUANTIZE": "a float boundary inside the graph: the Edge TPU needs a fully int8 model",
}
# Lowest op versions that Edge TPU Compiler 16.0.384591198 is reported unable to read ("Didn't find op for builtin
# opcode ... version N"): TRANSPOSE_CONV v4 (edgetpu#845), CONV_2D v6 (edgetpu#631, TF 2.9), QUANTIZE v3
# (edgetpu#879), EXP v2 (libedgetpu#71, TF 2.16).
COMPILER16_UNREADABLE_VERSIONS: dict[str, int] = {"TRANSPOSE_CONV": 4, "CONV_2D": 6, "QUANTIZE": 3, "EXP": 2}
# Parameters beyond this stream from the host on every inference (slow).
EDGETPU_CACHE_BYTES = 8 * 1024 * 1024


def _transpose_conv_stride(op: dict[str, Any], tensors: dict[int, dict[str, Any]]) -> int:
    """Stride of a TRANSPOSE_CONV from its input and output heights (its inputs: output_shape, weights, x)."""
    in_h = int(tensors[int(op["inputs"][2])]["shape"][1])
    out_h = int(tensors[int(op["outputs"][0])]["shape"][1])
    return max(1, out_h // max(1, in_h))


def op_versions(model_path: str | Path) -> dict[str, int]:
    """The highest version of each builtin op in the flatbuffer (what the Edge TPU compiler checks first)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    versions: dict[str, int] = {}
    for code in flatbuffer_utils.read_model(str(model_path)).operatorCodes:
        # Codes above 127 live in builtinCode; older files keep them in deprecatedBuiltinCode.
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        versions[name] = max(versions.get(name, 0), int(code.version))
    return dict(sorted(versions.items()))


def lint_model(model_path: str | Path) -> dict[str, Any]:
    """Lint one .tflite for the Edge TPU.

    Returns:
        {"ops": {op: count}, "op_versions": {op: version}, "issues": [{"op", "count", "problem"}],
         "edgetpu_ready": bool, "float_tensors": int, "dynamic_tensors": int, "model_bytes": int}
    """
    interpreter, _ = load_interpreter(model_path, num_threads=1)
    ops = [op for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]
    tensors = {int(t["index"]): t for t in interpreter.get_tensor_details()}
    counts = Counter(op["op_name"] for op in ops)
    issues: list[dict[str, Any]] = []
    for name, count in sorted(counts.items()):
        if name in DYNAMIC_SHAPE_OPS:
            issues.append(
                {
                    "op": name,
                    "count": count,
                    "problem": "dynamic-shape op: export with a fixed batch size (static shapes)",
                }
            )
        elif name not in EDGETPU_OPS:
            problem = _REASONS.get(name, "not in the Edge TPU's supported-op list: runs on the CPU")
            issues.append({"op": name, "count": count, "problem": problem})
    strided = [op for op in ops if op["op_name"] == "TRANSPOSE_CONV" and _transpose_conv_stride(op, tensors) > 1]
    if strided:
        issues.append(
            {
                "op": "TRANSPOSE_CONV",
                "count": len(strided),
                "problem": "stride-2 transposed convs often fail to map (edgetpu#509, #684, #686), "
                "and compiler 16 "
                "rejects the TRANSPOSE_CONV version current converters write (edgetpu#845): "
                "use UpSampling2D + Conv2D (the edge preset)",
            }
        )
    float_tensors = [t for t in tensors.values() if np.dtype(t["dtype"]) in (np.float32, np.float16)]
    if float_tensors:
        issues.append(
            {
                "op": "*",
                "count": len(float_tensors),
                "problem": "float tensors: the Edge TPU runs only fully int8 models (export --format int8)",
            }
        )
    dynamic = [t for t in tensors.values() if (np.asarray(t.get("shape_signature", t["shape"])) < 0).any()]
    if dynamic:
        issues.append(
            {
                "op": "*",
                "count": len(dynamic),
                "problem": "tensors with a dynamic dimension: export with a fixed batch size",
            }
        )
    model_bytes = Path(model_path).stat().st_size
    if model_bytes > EDGETPU_CACHE_BYTES:
        issues.append(
            {
                "op": "*",
                "count": 1,
                "problem": f"model is {model_bytes / 2**20:.1f} MiB, over the ~8 MiB on-chip parameter "
                "cache: the rest streams from the host on every inference",
            }
        )
    versions = op_versions(model_path)
    for name, version in versions.items():
        if name in COMPILER16_UNREADABLE_VERSIONS and version >= COMPILER16_UNREADABLE_VERSIONS[name]:
            issues.append(
                {
                    "op": name,
                    "count": counts.get(name, 0),
                    "problem": f"{name} version {version} is newer than Edge TPU Compiler 16 reads: "
                    "convert the Coral build with an older converter (see docs/export.md, 'A Coral (Edge TPU) build')",
                }
            )
    return {
        "ops": dict(sorted(counts.items())),
        "op_versions": versions,
        "issues": issues,
        "edgetpu_ready": not issues,
        "float_tensors": len(float_tensors),
        "dynamic_tensors": len(dynamic),
        "model_bytes": model_bytes,
    }


_OPERATOR_ROW = re.compile(r"^([A-Z][A-Z0-9_]+)\s+(\d+)\s+(\S.*)$")


def parse_compiler_report(text: str) -> dict[str, Any]:
    """Parse `edgetpu_compiler -s` output: version, ops on the TPU/CPU and the operator table."""
    version = re.search(r"Edge TPU Compiler version (\S+)", text)
    on_tpu = re.search(r"Number of operations that will run on Edge TPU: (\d+)", text)
    on_cpu = re.search(r"Number of operations that will run on CPU: (\d+)", text)
    rows = []
    in_table = False
    for line in text.splitlines():
        if line.startswith("Operator") and "Status" in line:
            in_table = True
            continue
        match = _OPERATOR_ROW.match(line.strip()) if in_table else None
        if match:
            rows.append({"op": match[1], "count": int(match[2]), "status": match[3].strip()})
    return {
        "compiler_version": version[1] if version else None,
        "ops_on_edgetpu": int(on_tpu[1]) if on_tpu else None,
        "ops_on_cpu": int(on_cpu[1]) if on_cpu else None,
        "operators": rows,
    }


def run_edgetpu_compiler(model_path: str | Path, timeout_s: float = 300.0) -> dict[str, Any] | None:
    """Compile `model_path` with `edgetpu_compiler -s` into a scratch folder and return its parsed report.

    Returns:
        None when `edgetpu_compiler` is not on PATH; else the parsed report plus "returncode" and "log" (the
        compiler's output, cut to 8000 characters). The compiled model itself is not kept: a Coral build is
        made on its own toolchain (see docs/export.md, "A Coral (Edge TPU) build").
    """
    compiler = shutil.which("edgetpu_compiler")
    if compiler is None:
        return None
    with tempfile.TemporaryDirectory() as out_dir:
        try:
            proc = subprocess.run(
                [compiler, "-s", "-o", out_dir, str(model_path)],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"returncode": None, "log": f"edgetpu_compiler timed out after {timeout_s:.0f} s"}
    text = proc.stdout + proc.stderr
    report = parse_compiler_report(text)
    report["returncode"] = proc.returncode
    report["log"] = text[-8000:]
    log.info(
        "edgetpu_compiler: %s ops on the Edge TPU, %s on the CPU (exit %d)",
        report["ops_on_edgetpu"],
        report["ops_on_cpu"],
        proc.returncode,
    )
    return report

"""Export a run's generator to a TFLite model bundle the kiosk can trust (`atelier export`).

Steps: load the EMA generator from the run folder; fold BatchNorm and make nearest upsampling a resize op
(`trainer.export_graph`); convert one static-shape model per batch size through `model.export()` +
`TFLiteConverter.from_saved_model` (the robust path for Keras 3 models); write the manifest; reopen the bundle
with `edge.bundle.load_bundle` and run it with the kiosk's own `DesignGenerator` on 256 fixed latents to
measure parity with the float Keras generator; lint the graph for the Edge TPU; move the finished bundle into
place.

Quantization formats:
- int8: full-integer post-training quantization. A representative dataset of latents from the training prior
  (and one-hot classes for a conditional model) calibrates the activation ranges; weights are symmetric
  per-channel int8, activations asymmetric per-tensor int8, inputs and output int8 (the tanh output has the
  fixed scale 1/128, zero point 0).
- fp16: float16 weights, float32 compute on CPU (no CPU speed-up; for GPU delegates and half the size).
- fp32: the float model as is, for comparison.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import load_bundle, write_manifest
from edge.designs import DesignGenerator, sample_prior
from edge.errors import UserError
from edge.kernels import postprocess
from edge.version import __version__
from trainer import run_folder
from trainer.edgetpu_lint import lint_model, run_edgetpu_compiler
from trainer.export_graph import GraphReport, prepare_for_tflite
from trainer.portable_paths import portable_if_absolute, portable_training

log = logging.getLogger(__name__)

EXPORTER_VERSION = f"atelier {__version__} (bundle exporter 1)"
FORMATS: tuple[str, ...] = ("int8", "fp16", "fp32")
DEFAULT_BATCHES: tuple[int, ...] = (1, 8)
MAX_BATCH = 256
# Parity floor per format, in dB PSNR of the uint8 designs against the float Keras generator's. Measured here:
# int8 of the 2-epoch tiny run ~46 dB, of an untrained edge generator ~52 dB (a long-trained generator with wider
# activation ranges will land lower); below 20 dB designs visibly differ (colour shifts, blotches). fp16 and fp32
# differ from Keras only by float rounding (65+ dB here), so below 40 dB means a broken conversion.
DEFAULT_MIN_PSNR_DB: dict[str, float] = {"int8": 20.0, "fp16": 40.0, "fp32": 40.0}
# PSNR of identical images is infinite; the report caps it so the manifest stays plain JSON.
PSNR_CAP_DB = 100.0
REPRESENTATIVE_N = 320  # latents that calibrate int8 activation ranges
REPRESENTATIVE_SEED = 1
PARITY_N = 256  # fixed latents of the parity check (a different seed from calibration)
PARITY_SEED = 20240611
REFERENCE_CHUNK = 64  # Keras reference forward pass, in chunks of this many latents

# Ops of a graph that updates variables (e.g. BatchNorm traced in training mode): never in a generator.
_STATEFUL_OPS = frozenset({"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"})
_REQUIRED_CONFIG = ("preset", "size_px", "z_dim", "z_distribution", "conditional", "class_names")


@dataclass
class ExportOptions:
    """What `atelier export` was asked for."""

    fmt: str = "int8"  # "int8", "fp16" or "fp32"
    batches: tuple[int, ...] = DEFAULT_BATCHES  # one static-shape model per batch size
    force: bool = False  # keep a bundle that fails the parity floor (recorded in the manifest)
    min_psnr_db: float | None = None  # parity floor; None = DEFAULT_MIN_PSNR_DB[fmt]
    name: str | None = None  # bundle name; None = "<run folder name>-<fmt>"
    overwrite: bool = False  # replace an existing bundle folder
    command: list[str] = field(default_factory=list)  # the command line, recorded in the manifest
    edgetpu_compiler: bool = True  # add edgetpu_compiler's report when it is on PATH


@dataclass
class ExportResult:
    """The written bundle and its parity figures."""

    bundle_dir: Path
    parity: dict[str, Any]
    lint: dict[str, Any]


def parse_batches(text: str) -> tuple[int, ...]:
    """ "1,8" -> (1, 8); raises UserError for anything but distinct positive integers up to MAX_BATCH."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        batches = tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(f"--batch takes comma-separated batch sizes such as 1,8; got {text!r}") from None
    if not batches or any(b < 1 or b > MAX_BATCH for b in batches) or len(set(batches)) != len(batches):
        raise UserError(f"--batch needs distinct batch sizes between 1 and {MAX_BATCH}, got {text!r}")
    return tuple(sorted(batches))


def _check_options(options: ExportOptions) -> None:
    if options.fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {options.fmt!r}")
    if not options.batches:
        raise UserError("--batch needs at least one batch size")
    parse_batches(",".join(map(str, options.batches)))
    if options.min_psnr_db is not None and not math.isfinite(options.min_psnr_db):
        raise UserError("--min-psnr must be a number of dB")


def _check_config(config: dict[str, Any], run_dir: Path) -> None:
    missing = [k for k in _REQUIRED_CONFIG if k not in config]
    if missing:
        raise UserError(f"{run_dir / run_folder.CONFIG} lacks {missing}: was the run made by `atelier train`?")
    if config["conditional"] and not config["class_names"]:
        raise UserError(f"{run_dir / run_folder.CONFIG} says conditional but lists no class_names")


def _check_generator(model: Any, config: dict[str, Any], run_dir: Path) -> None:
    """The generator's inputs and output must be what config.json says (z, class one-hot, size)."""
    size, z_dim = int(config["size_px"]), int(config["z_dim"])
    want = [("z", z_dim)]
    if config["conditional"]:
        want.append(("class_onehot", len(config["class_names"])))
    got = [(t.name.split(":")[0], t.shape[-1]) for t in model.inputs]
    if sorted(got) != sorted(want):
        raise UserError(f"{run_dir / run_folder.GENERATOR} has inputs {got}, but config.json describes {want}")
    if tuple(model.output.shape[1:]) != (size, size, 3):
        raise UserError(
            f"{run_dir / run_folder.GENERATOR} draws {tuple(model.output.shape[1:])}, config.json says {size} px"
        )


def _input_names(config: dict[str, Any]) -> list[str]:
    return ["z", "class_onehot"] if config["conditional"] else ["z"]


def _representative(config: dict[str, Any], batch: int) -> Iterator[dict[str, np.ndarray]]:
    """Calibration samples for int8: latents from the prior, and one-hot classes drawn evenly."""
    z_all = sample_prior(REPRESENTATIVE_N, int(config["z_dim"]), config["z_distribution"], REPRESENTATIVE_SEED)
    n_classes = len(config["class_names"]) if config["conditional"] else 0
    for start in range(0, REPRESENTATIVE_N - batch + 1, batch):
        sample = {"z": z_all[start : start + batch]}
        if n_classes:
            ids = np.arange(start, start + batch) % n_classes
            sample["class_onehot"] = np.eye(n_classes, dtype=np.float32)[ids]
        yield sample


def convert(model: Any, config: dict[str, Any], batch: int, fmt: str) -> bytes:
    """Convert a (prepared) Keras generator to a .tflite with a fixed batch size.

    Goes through a SavedModel with a static input signature: a fixed batch keeps SHAPE/PACK/STRIDED_SLICE out
    of the graph, and `model.export()` + `from_saved_model` avoids Keras 3 `from_keras_model` breakage
    (tensorflow#63867, keras#19108).
    """
    import tensorflow as tf

    specs = [tf.TensorSpec((batch, int(t.shape[-1])), tf.float32, name=t.name.split(":")[0]) for t in model.inputs]
    signature = [specs] if len(specs) > 1 else specs
    with tempfile.TemporaryDirectory(prefix="atelier-export-") as saved:
        model.export(saved, format="tf_saved_model", input_signature=signature, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        if fmt == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: _representative(config, batch)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        elif fmt == "fp16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        try:
            with warnings.catch_warnings():
                # int8 calibration runs tf.lite.Interpreter internally, which warns that it is deprecated.
                warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
                return converter.convert()
        except Exception as exc:  # the converter raises ConverterError and friends with long MLIR dumps
            raise UserError(f"TFLite conversion ({fmt}, batch {batch}) failed: {str(exc)[:2000]}") from exc


def _tensor_entry(detail: dict[str, Any], name: str) -> dict[str, Any]:
    dtype = np.dtype(detail["dtype"]).name
    scale, zero_point = detail["quantization"]
    quantized = dtype in ("int8", "uint8")
    return {
        "name": name,
        "dtype": dtype,
        "shape": [int(d) for d in detail["shape"]],
        "scale": float(scale) if quantized else None,
        "zero_point": int(zero_point) if quantized else None,
    }


def describe_model(model_path: Path, input_names: Sequence[str], batch: int) -> dict[str, Any]:
    """The manifest entry of one converted model: its tensors as the interpreter sees them, z first."""
    from edge.litert import load_interpreter

    interpreter, _ = load_interpreter(model_path, num_threads=1)
    signatures = interpreter.get_signature_list()
    if len(signatures) != 1:
        raise UserError(f"{model_path} should have one signature, has {list(signatures)}")
    stateful = {op["op_name"] for op in interpreter._get_ops_details()} & _STATEFUL_OPS
    if stateful:
        raise UserError(
            f"{model_path} converted with variable ops {sorted(stateful)}: the generator traced in "
            "training mode; this is an exporter bug, please report it with the run's config.json"
        )
    runner = interpreter.get_signature_runner(next(iter(signatures)))
    inputs = runner.get_input_details()
    outputs = runner.get_output_details()
    if sorted(inputs) != sorted(input_names) or len(outputs) != 1:
        raise UserError(
            f"{model_path} has inputs {sorted(inputs)} / {len(outputs)} outputs; "
            f"expected {list(input_names)} and one output"
        )
    return {
        "file": model_path.name,
        "batch": batch,
        "inputs": [_tensor_entry(inputs[name], name) for name in input_names],
        "output": _tensor_entry(next(iter(outputs.values())), "image"),
    }


def _reference_images(model: Any, z: np.ndarray, onehot: np.ndarray | None) -> np.ndarray:
    """The float Keras generator's designs (inference mode), through the same postprocess as the kiosk's."""
    out = []
    for start in range(0, len(z), REFERENCE_CHUNK):
        feed = {"z": z[start : start + REFERENCE_CHUNK]}
        if onehot is not None:
            feed["class_onehot"] = onehot[start : start + REFERENCE_CHUNK]
        y = model(feed, training=False)
        out.append(postprocess(np.asarray(y, dtype=np.float32)))
    return np.concatenate(out)


def image_parity(reference: np.ndarray, images: np.ndarray) -> dict[str, float]:
    """PSNR (dB, capped at PSNR_CAP_DB), mean and max absolute error of uint8 images, in 0-255 units."""
    diff = reference.astype(np.float64) - images.astype(np.float64)
    mse = float(np.mean(diff**2))
    psnr = PSNR_CAP_DB if mse == 0 else min(PSNR_CAP_DB, 10.0 * math.log10(255.0**2 / mse))
    return {
        "psnr_db": round(psnr, 3),
        "mae": round(float(np.mean(np.abs(diff))), 4),
        "max_abs": int(np.max(np.abs(diff))),
    }


def measure_parity(model: Any, bundle_dir: Path, min_psnr_db: float) -> dict[str, Any]:
    """Run every model of the bundle on PARITY_N fixed latents and compare with the float Keras generator."""
    bundle = load_bundle(bundle_dir)
    z = sample_prior(PARITY_N, bundle.z_dim, bundle.z_distribution, PARITY_SEED)
    ids = np.arange(PARITY_N) % len(bundle.class_names) if bundle.conditional else None
    onehot = None if ids is None else np.eye(len(bundle.class_names or ()), dtype=np.float32)[ids]
    reference = _reference_images(model, z, onehot)
    per_model = {}
    for batch in bundle.batches:
        images = DesignGenerator(bundle, batch=batch, num_threads=2).generate(z, ids)
        per_model[bundle.models[batch].file] = image_parity(reference, images)
    worst = min(m["psnr_db"] for m in per_model.values())
    return {
        "reference": "float Keras generator (generator.keras), inference mode",
        "n_latents": PARITY_N,
        "seed": PARITY_SEED,
        "min_psnr_db": min_psnr_db,
        "worst_psnr_db": worst,
        "passed": worst >= min_psnr_db,
        "models": per_model,
    }


def _lint(bundle_dir: Path, models: list[dict[str, Any]], run_compiler: bool) -> dict[str, Any]:
    lint = {m["file"]: lint_model(bundle_dir / m["file"]) for m in models}
    smallest = min(models, key=lambda m: m["batch"])
    report: dict[str, Any] = {"models": lint, "edgetpu_compiler": None}
    if run_compiler:
        report["edgetpu_compiler"] = run_edgetpu_compiler(bundle_dir / smallest["file"])
    return report




def _base_manifest(
    name: str,
    config: dict[str, Any],
    summary: dict[str, Any],
    run_dir: Path,
    options: ExportOptions,
    graph: GraphReport,
) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    return {
        "name": name,
        "preset": str(config["preset"]),
        "size_px": int(config["size_px"]),
        "z_dim": int(config["z_dim"]),
        "z_distribution": str(config["z_distribution"]),
        "class_names": list(config["class_names"]) if config["conditional"] else None,
        "quantization": options.fmt,
        "models": [],
        "training": portable_training(run_dir, config, summary),
        "export": {
            "exporter_version": EXPORTER_VERSION,
            "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": [portable_if_absolute(str(c)) for c in options.command],  # no machine paths
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "representative": {"n_latents": REPRESENTATIVE_N, "seed": REPRESENTATIVE_SEED}
            if options.fmt == "int8"
            else None,
            "graph": graph.to_json(),
        },
        "parity": None,
        "edgetpu_lint": None,
    }


def _prepare_out_dir(out_dir: Path, run_dir: Path, overwrite: bool) -> None:
    if out_dir.resolve() == run_dir.resolve() or run_dir.resolve() in out_dir.resolve().parents:
        raise UserError(f"--out {out_dir} is inside the run folder; write the bundle somewhere else")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise UserError(f"--out {out_dir} is a file; give a folder for the bundle")
        if any(out_dir.iterdir()) and not overwrite:
            raise UserError(f"--out {out_dir} already exists and is not empty: pass --overwrite or choose another")
        if overwrite and any(out_dir.iterdir()) and not (out_dir / "manifest.json").is_file():
            raise UserError(f"--out {out_dir} is not a bundle folder; refusing to overwrite it")


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Replace out_dir by staging; the old bundle is removed only once the new one is in place."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_bundle(run_dir: str | Path, out_dir: str | Path, options: ExportOptions | None = None) -> ExportResult:
    """Export the run's generator as a bundle folder.

    Args:
        run_dir: a run folder written by `atelier train` (config.json, summary.json, generator.keras).
        out_dir: the bundle folder to write (created; replaced only with `options.overwrite`).
        options: format, batch sizes, parity floor, etc.

    Returns:
        The bundle folder with its parity and lint reports.

    Raises:
        UserError: a bad run folder or option, a conversion failure, or parity below the floor without `force`
            (then nothing is written).
    """
    from tqdm import tqdm

    options = options or ExportOptions()
    _check_options(options)
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder {run_dir} does not exist: give a folder made by `atelier train --out`")
    _prepare_out_dir(out_dir, run_dir, options.overwrite)
    config = run_folder.read_config(run_dir)
    _check_config(config, run_dir)
    summary = run_folder.read_summary(run_dir)
    model = run_folder.load_generator(run_dir)
    _check_generator(model, config, run_dir)
    min_psnr = DEFAULT_MIN_PSNR_DB[options.fmt] if options.min_psnr_db is None else options.min_psnr_db
    prepared, graph = prepare_for_tflite(model)
    if graph.unfolded_batchnorm:
        log.warning("BatchNorm layers not folded (no linear layer right before them): %s", graph.unfolded_batchnorm)
    name = options.name or f"{run_dir.resolve().name}-{options.fmt}"
    manifest = _base_manifest(name, config, summary, run_dir.resolve(), options, graph)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.export-", dir=out_dir.parent))
    try:
        for batch in tqdm(options.batches, desc=f"export {options.fmt}", unit="model", leave=False):
            path = staging / f"generator_b{batch}.tflite"
            path.write_bytes(convert(prepared, config, batch, options.fmt))
            manifest["models"].append(describe_model(path, _input_names(config), batch))
        write_manifest(staging, manifest)
        parity = measure_parity(model, staging, min_psnr)
        lint = _lint(staging, manifest["models"], options.edgetpu_compiler)
        parity["forced"] = bool(options.force and not parity["passed"])
        manifest["parity"] = parity
        manifest["edgetpu_lint"] = lint
        write_manifest(staging, manifest)
        load_bundle(staging)  # what we hand over must load
        if not parity["passed"] and not options.force:
            worst = min(parity["models"].items(), key=lambda kv: kv[1]["psnr_db"])
            raise UserError(
                f"{options.fmt} export fails parity: {worst[0]} reaches {worst[1]['psnr_db']:.1f} dB PSNR "
                f"(MAE {worst[1]['mae']:.1f}/255) against the float generator, below the {min_psnr:g} dB "
                "floor. Nothing was written. A generator that draws flat or saturated images quantizes "
                "badly: check the run's samples, try --format fp16, or pass --force to keep this bundle "
                "(recorded in its manifest)"
            )
        # mkdtemp made the folder 0700 and os.replace keeps that: a bundle exported by root or a technician
        # into the kiosk's models folder would be unreadable to the kiosk's own service user.
        for path in staging.iterdir():
            if path.is_file():
                path.chmod(0o644)
        staging.chmod(0o755)
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info(
        "bundle %s: %s, worst PSNR %.1f dB over %d latents",
        out_dir,
        ", ".join(f"{m['file']} {(out_dir / m['file']).stat().st_size / 1024:.0f} KiB" for m in manifest["models"]),
        parity["worst_psnr_db"],
        PARITY_N,
    )
    return ExportResult(bundle_dir=out_dir, parity=parity, lint=lint)

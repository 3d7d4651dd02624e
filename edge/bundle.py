"""The model bundle: a folder of TFLite generators plus a manifest that says what they are, verified on load.

A bundle folder holds `generator_b<B>.tflite` (one static-shape model per batch size B) and `manifest.json`:

    {
      "format_version": 1,
      "name": "tiny-32px", "preset": "tiny", "size_px": 32,
      "z_dim": 16, "z_distribution": "normal",         # the prior latents are drawn from
      "class_names": ["dress", "t-shirt"] | null,       # null: unconditional
      "quantization": "int8" | "fp16" | "fp32",
      "models": [{"file": "generator_b1.tflite", "batch": 1,
                  "inputs": [{"name": "z", "dtype": "int8", "shape": [1, 16],
                              "scale": 0.027, "zero_point": 3},
                             {"name": "class_onehot", ...}],   # conditional only; z always first
                  "output": {"name": "image", "dtype": "int8", "shape": [1, 32, 32, 3],
                             "scale": 0.0078125, "zero_point": 0}}],
      "files": {"generator_b1.tflite": {"sha256": "...", "bytes": 40112}},
      "training": {...}, "export": {...}, "parity": {...}, "edgetpu_lint": {...},  # reports, free-form
      "encoder": {"file": "encoder_b1.tflite", "sha256": "...", "bytes": 1900000,   # optional (inspire)
                  "input": {"name": "image", "dtype": "int8", "shape": [1, 32, 32, 3], ...},
                  "outputs": [{"name": "z", ...}, {"name": "class_logits", ...}],   # class_logits: conditional
                  "training": {...}, "parity": {...}, "edgetpu_lint": {...}}
    }

The encoder is optional and fails soft: a bundle whose encoder entry is malformed, or whose encoder file is
missing, damaged or not a TFLite model, still loads (the generator is what the kiosk serves); `Bundle.encoder` is
then None and `Bundle.encoder_error` says why, so the inspire feature reports itself unavailable.

`load_bundle` is the one way every consumer (the `generate` command, the kiosk, the exporter's own parity
check) opens a bundle: it checks the format version, every required field, the size and sha256 of every file
and that each model file is a TFLite flatbuffer, and raises `BundleError` naming the problem and what to do
about it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import UserError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
Z_DISTRIBUTIONS: tuple[str, ...] = ("uniform", "normal")
QUANTIZATIONS: tuple[str, ...] = ("int8", "fp16", "fp32")
TENSOR_DTYPES: tuple[str, ...] = ("int8", "uint8", "float32", "float16")
# The FlatBuffer file identifier of a TFLite model sits at bytes 4..8 of the file.
TFLITE_IDENTIFIER = b"TFL3"
# Model file names a manifest may name: plain names inside the bundle folder, never a path.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class BundleError(UserError):
    """A bundle that cannot be trusted: missing, damaged, or not made by a compatible `atelier export`."""


@dataclass(frozen=True)
class TensorQuant:
    """A model input or output: dtype, static shape and int8 quantization (None for float tensors).

    A real value x and its quantized q relate by x = scale * (q - zero_point).
    """

    dtype: str
    shape: tuple[int, ...]
    scale: float | None
    zero_point: int | None
    name: str = ""  # "z", "class_onehot" or "image": how the model's signature names it


# Optional models beside the generator, each with its own manifest entry (file, sha256, bytes, tensors): the
# inspire encoder (parsed here), the 2x upscaler (parsed by edge.upscaler when the kiosk first enlarges a design).
OPTIONAL_MODELS: tuple[str, ...] = ("encoder", "upscaler")


@dataclass(frozen=True)
class ModelEntry:
    """One TFLite file of the bundle: its static batch size and its tensors (inputs: z first)."""

    file: str
    batch: int
    inputs: tuple[TensorQuant, ...]
    output: TensorQuant


@dataclass(frozen=True)
class EncoderEntry:
    """The bundle's inspire encoder: photo (int8, static shape) -> z (and class logits for conditional)."""

    file: str
    input: TensorQuant
    outputs: tuple[TensorQuant, ...]  # z first, then class_logits for a conditional bundle


@dataclass(frozen=True)
class Bundle:
    """A verified bundle. `model_id` is the first 12 hex digits of the sha256 of manifest.json."""

    path: Path
    manifest: dict[str, Any]
    model_id: str
    name: str
    preset: str
    size_px: int
    z_dim: int
    z_distribution: str
    class_names: tuple[str, ...] | None
    models: dict[int, ModelEntry]
    encoder: EncoderEntry | None = None  # None: no encoder, or one that failed its checks (see encoder_error)
    encoder_error: str | None = None  # why the encoder is unavailable; None when it loaded or there is none

    @property
    def conditional(self) -> bool:
        """True when the generator takes a class (one-hot) besides z."""
        return self.class_names is not None

    @property
    def quantization(self) -> str:
        """ "int8", "fp16" or "fp32"."""
        return str(self.manifest["quantization"])

    @property
    def batches(self) -> tuple[int, ...]:
        """The batch sizes the bundle has a model for, ascending."""
        return tuple(sorted(self.models))

    def model_path(self, batch: int) -> Path:
        """Path of the model file for `batch`.

        Raises:
            BundleError: the bundle has no model for that batch size.
        """
        if batch not in self.models:
            raise BundleError(
                f"bundle {self.path} has no model for batch size {batch}; it has batch sizes "
                f"{', '.join(map(str, self.batches))} (re-export with `atelier export --batch ...` "
                "to add one)"
            )
        return self.path / self.models[batch].file

    def class_index(self, class_name: str) -> int:
        """The class id of `class_name` for a conditional bundle.

        Raises:
            BundleError: the bundle is unconditional or has no such class.
        """
        if self.class_names is None:
            raise BundleError(f"bundle {self.path.name!r} is unconditional: it has no classes to choose from")
        if class_name not in self.class_names:
            raise BundleError(
                f"unknown class {class_name!r}; bundle {self.path.name!r} knows: "
                f"{', '.join(self.class_names)}"
            )
        return self.class_names.index(class_name)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(bundle_dir: str | Path, manifest: dict[str, Any]) -> Path:
    """Fill in `files` (sha256 and size of every model file), check the manifest and write it atomically.

    Args:
        bundle_dir: the bundle folder; the model files the manifest names must already be in it.
        manifest: the manifest without `files` (any given `files` entry is replaced).

    Returns:
        The path of the written manifest.json.

    Raises:
        BundleError: the manifest is incomplete or names a file that is not there.
    """
    bundle_dir = Path(bundle_dir)
    manifest = dict(manifest)
    manifest["format_version"] = FORMAT_VERSION
    files: dict[str, dict[str, Any]] = {}
    for model in manifest.get("models", []):
        name = model.get("file") if isinstance(model, dict) else None
        path = bundle_dir / _safe_file_name(name, bundle_dir)
        if not path.is_file():
            raise BundleError(f"cannot write the manifest: model file {path} does not exist")
        files[path.name] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
    manifest["files"] = files
    for extra in OPTIONAL_MODELS:  # each hashed in its own entry: a bad encoder or upscaler must not block loading
        if isinstance(manifest.get(extra), dict):
            entry = dict(manifest[extra])
            path = bundle_dir / _safe_file_name(entry.get("file"), bundle_dir)
            if not path.is_file():
                raise BundleError(f"cannot write the manifest: {extra} file {path} does not exist")
            entry.update(sha256=file_sha256(path), bytes=path.stat().st_size)
            manifest[extra] = entry
    _parse_manifest(manifest, bundle_dir)  # the writer and the reader agree on what a valid manifest is
    out = bundle_dir / MANIFEST
    tmp = bundle_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out)
    return out


def load_bundle(path: str | Path) -> Bundle:
    """Open and verify a bundle folder (or its manifest.json).

    Checks: the folder and manifest exist, the manifest is a JSON object with every required field and a
    supported `format_version`, every file it lists exists with the recorded size and sha256, and every model
    file is a TFLite flatbuffer.

    Raises:
        BundleError: naming the first problem found and what to do about it.
    """
    path = Path(path)
    if path.is_file() and path.name == MANIFEST:
        path = path.parent
    if not path.exists():
        raise BundleError(
            f"bundle folder {path} does not exist: give the folder `atelier export --out` wrote"
        )
    if not path.is_dir():
        raise BundleError(f"{path} is a file, not a bundle folder: give the folder that holds {MANIFEST}")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(
            f"{path} has no {MANIFEST}: it is not a model bundle (make one with `atelier export`)"
        )
    raw = manifest_path.read_bytes()
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(
            f"{manifest_path} is not valid JSON ({exc}): the bundle is damaged, re-export it"
        ) from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{manifest_path} should hold a JSON object, not {type(manifest).__name__}")
    fields = _parse_manifest(manifest, path)
    _verify_files(manifest["files"], path)
    for entry in fields["models"].values():
        _check_tflite_identifier(path / entry.file)
    model_id = hashlib.sha256(raw).hexdigest()[:12]
    encoder, encoder_error = None, None
    if manifest.get("encoder") is not None:
        try:
            encoder = _parse_encoder(manifest["encoder"], path, fields)
        except BundleError as exc:
            encoder_error = str(exc)
    return Bundle(path=path, manifest=manifest, model_id=model_id, encoder=encoder, encoder_error=encoder_error,
                  **fields)


def _parse_encoder(data: Any, bundle_dir: Path, fields: dict[str, Any]) -> EncoderEntry:
    """Check the encoder entry and its file (size, sha256, TFLite identifier); BundleError says what is wrong."""
    where = f"manifest in {bundle_dir}, encoder"
    if not isinstance(data, dict):
        raise BundleError(f"{where} should be a JSON object: re-run `atelier train-encoder`")
    file = _safe_file_name(_require(data, "file", str, where), bundle_dir)
    _verify_files({file: {"sha256": data.get("sha256"), "bytes": data.get("bytes")}}, bundle_dir)
    _check_tflite_identifier(bundle_dir / file)
    image = _parse_tensor(_require(data, "input", dict, where), f"{where}.input")
    outputs_data = _require(data, "outputs", list, where)
    outputs = tuple(_parse_tensor(t, f"{where}.outputs[{i}]") for i, t in enumerate(outputs_data))
    size, z_dim, classes = fields["size_px"], fields["z_dim"], fields["class_names"]
    if image.shape != (1, size, size, 3):
        raise BundleError(f"{where} input has shape {list(image.shape)}, expected {[1, size, size, 3]}")
    want = [(1, z_dim)] + ([] if classes is None else [(1, len(classes))])
    if [t.shape for t in outputs] != want:
        raise BundleError(f"{where} outputs have shapes {[list(t.shape) for t in outputs]}, expected "
                          f"{[list(w) for w in want]}")
    return EncoderEntry(file=file, input=image, outputs=outputs)


def check_optional_file(data: Any, bundle_dir: Path, where: str, remedy: str) -> str:
    """An optional model's entry (a JSON object naming its file) and the file itself (size, sha256, TFLite
    identifier); returns the file name. BundleError says what is wrong and `remedy` what to do."""
    if not isinstance(data, dict):
        raise BundleError(f"{where} should be a JSON object: {remedy}")
    file = _safe_file_name(_require(data, "file", str, where), bundle_dir)
    _verify_files({file: {"sha256": data.get("sha256"), "bytes": data.get("bytes")}}, bundle_dir)
    _check_tflite_identifier(bundle_dir / file)
    return file


def parse_tensor(data: Any, where: str) -> TensorQuant:
    """A tensor entry of the manifest (name, dtype, shape, int8 scale and zero point)."""
    return _parse_tensor(data, where)


def _require(manifest: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in manifest:
        raise BundleError(f"{where} is missing the field {key!r}: the bundle is incomplete, re-export it")
    value = manifest[key]
    # bool is an int in Python; a manifest saying "size_px": true is still wrong.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise BundleError(
            f"{where} field {key!r} has the wrong type ({type(value).__name__}): re-export the bundle"
        )
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _safe_file_name(name: Any, bundle_dir: Path) -> str:
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or name == MANIFEST:
        raise BundleError(
            f"manifest in {bundle_dir} names a model file {name!r} that is not a plain file name "
            "inside the bundle"
        )
    return name


def _parse_tensor(data: Any, where: str) -> TensorQuant:
    if not isinstance(data, dict):
        raise BundleError(f"{where} should be a JSON object: re-export the bundle")
    dtype = _require(data, "dtype", str, where)
    if dtype not in TENSOR_DTYPES:
        raise BundleError(f"{where} has unsupported dtype {dtype!r} (supported: {', '.join(TENSOR_DTYPES)})")
    shape = _require(data, "shape", list, where)
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise BundleError(f"{where} shape {shape} is not a static shape of positive sizes")
    scale = _require(data, "scale", (int, float, type(None)), where)
    zero_point = _require(data, "zero_point", (int, type(None)), where)
    quantized = dtype in ("int8", "uint8")
    if quantized and (scale is None or zero_point is None or not scale > 0):
        raise BundleError(f"{where} is {dtype} but has no valid scale/zero_point")
    if not quantized and (scale is not None or zero_point is not None):
        raise BundleError(f"{where} is {dtype} (float) but carries a scale/zero_point")
    name = data.get("name", "")
    if not isinstance(name, str):
        raise BundleError(f"{where} field 'name' should be a string")
    return TensorQuant(
        dtype=dtype,
        shape=tuple(shape),
        scale=None if scale is None else float(scale),
        zero_point=zero_point,
        name=name,
    )


def _parse_manifest(manifest: dict[str, Any], bundle_dir: Path) -> dict[str, Any]:
    """Check the manifest's fields; return the Bundle fields they give (except path, manifest, model_id)."""
    where = f"manifest in {bundle_dir}"
    version = _require(manifest, "format_version", int, where)
    if version != FORMAT_VERSION:
        hint = "upgrade atelier" if version > FORMAT_VERSION else "re-export it with this atelier"
        raise BundleError(
            f"bundle {bundle_dir} has format_version {version}, this atelier reads format_version "
            f"{FORMAT_VERSION}: {hint}"
        )
    name = _require(manifest, "name", str, where)
    preset = _require(manifest, "preset", str, where)
    size_px = _require(manifest, "size_px", int, where)
    z_dim = _require(manifest, "z_dim", int, where)
    if size_px < 1 or z_dim < 1:
        raise BundleError(f"{where} has size_px={size_px}, z_dim={z_dim}; both must be positive")
    z_distribution = _require(manifest, "z_distribution", str, where)
    if z_distribution not in Z_DISTRIBUTIONS:
        raise BundleError(
            f"{where} has z_distribution {z_distribution!r}; expected one of {', '.join(Z_DISTRIBUTIONS)}"
        )
    class_names = _require(manifest, "class_names", (list, type(None)), where)
    if class_names is not None:
        if not class_names or not all(isinstance(c, str) and c for c in class_names):
            raise BundleError(f"{where} class_names must be a non-empty list of names, or null")
        if len(set(class_names)) != len(class_names):
            raise BundleError(f"{where} class_names has duplicates: {class_names}")
    quantization = _require(manifest, "quantization", str, where)
    if quantization not in QUANTIZATIONS:
        raise BundleError(f"{where} quantization {quantization!r} is not one of {', '.join(QUANTIZATIONS)}")
    files = _require(manifest, "files", dict, where)
    models_list = _require(manifest, "models", list, where)
    if not models_list:
        raise BundleError(f"{where} lists no models: re-export the bundle")
    models: dict[int, ModelEntry] = {}
    n_inputs = 1 if class_names is None else 2
    for i, data in enumerate(models_list):
        mwhere = f"{where}, models[{i}]"
        if not isinstance(data, dict):
            raise BundleError(f"{mwhere} should be a JSON object")
        file = _safe_file_name(_require(data, "file", str, mwhere), bundle_dir)
        batch = _require(data, "batch", int, mwhere)
        if batch < 1 or batch in models:
            raise BundleError(f"{mwhere} has batch {batch}: batch sizes must be positive and unique")
        if file not in files:
            raise BundleError(f"{where} lists model {file} but has no sha256 for it under 'files'")
        inputs_data = _require(data, "inputs", list, mwhere)
        inputs = tuple(_parse_tensor(t, f"{mwhere}.inputs[{j}]") for j, t in enumerate(inputs_data))
        output = _parse_tensor(_require(data, "output", dict, mwhere), f"{mwhere}.output")
        _check_shapes(mwhere, batch, inputs, output, n_inputs, z_dim, size_px, class_names)
        models[batch] = ModelEntry(file=file, batch=batch, inputs=inputs, output=output)
    return {
        "name": name,
        "preset": preset,
        "size_px": size_px,
        "z_dim": z_dim,
        "z_distribution": z_distribution,
        "class_names": None if class_names is None else tuple(class_names),
        "models": models,
    }


def _check_shapes(
    where: str,
    batch: int,
    inputs: tuple[TensorQuant, ...],
    output: TensorQuant,
    n_inputs: int,
    z_dim: int,
    size_px: int,
    class_names: list[str] | None,
) -> None:
    if len(inputs) != n_inputs:
        kind = "unconditional" if class_names is None else "conditional"
        raise BundleError(f"{where} has {len(inputs)} inputs; a {kind} generator has {n_inputs}")
    if inputs[0].shape != (batch, z_dim):
        raise BundleError(f"{where} input z has shape {list(inputs[0].shape)}, expected {[batch, z_dim]}")
    if class_names is not None and inputs[1].shape != (batch, len(class_names)):
        raise BundleError(
            f"{where} class input has shape {list(inputs[1].shape)}, expected {[batch, len(class_names)]}"
        )
    if output.shape != (batch, size_px, size_px, 3):
        raise BundleError(
            f"{where} output has shape {list(output.shape)}, expected {[batch, size_px, size_px, 3]}"
        )


def _verify_files(files: dict[str, Any], bundle_dir: Path) -> None:
    for name, info in files.items():
        _safe_file_name(name, bundle_dir)
        where = f"manifest in {bundle_dir}, files[{name!r}]"
        if not isinstance(info, dict):
            raise BundleError(f"{where} should be a JSON object with sha256 and bytes")
        expected_sha = _require(info, "sha256", str, where)
        expected_bytes = _require(info, "bytes", int, where)
        path = bundle_dir / name
        if not path.is_file():
            raise BundleError(f"bundle {bundle_dir} is missing {name}: copy the whole bundle folder again")
        size = path.stat().st_size
        if size != expected_bytes:
            what = "truncated" if size < expected_bytes else "longer than recorded"
            raise BundleError(
                f"{path} is {what} ({size} bytes, the manifest says {expected_bytes}): copy the bundle again"
            )
        actual = file_sha256(path)
        if actual != expected_sha.lower():
            raise BundleError(
                f"{path} fails its checksum (sha256 {actual[:12]}..., "
                f"the manifest says {expected_sha[:12]}...): "
                "the file was changed or damaged; copy the bundle again"
            )


def _check_tflite_identifier(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:8] != TFLITE_IDENTIFIER:
        raise BundleError(
            f"{path} is not a TFLite model (no 'TFL3' flatbuffer identifier): re-export the bundle"
        )

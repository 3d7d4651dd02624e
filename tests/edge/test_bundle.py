"""Bundle verification: every way a bundle can be damaged is refused with a message that names the problem."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from edge.bundle import FORMAT_VERSION, MANIFEST, BundleError, file_sha256, load_bundle
from edge.designs import DesignGenerator
from edge.errors import UserError

REQUIRED_FIELDS = [
    "format_version",
    "name",
    "preset",
    "size_px",
    "z_dim",
    "z_distribution",
    "class_names",
    "quantization",
    "models",
    "files",
]


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny int8 bundle that a test may damage."""
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def read_manifest(bundle: Path) -> dict:
    return json.loads((bundle / MANIFEST).read_text())


def write_raw_manifest(bundle: Path, manifest: dict) -> None:
    """Hand-edit the manifest (no checks, unlike edge.bundle.write_manifest)."""
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def rehash(bundle: Path, name: str) -> None:
    """Record a file's current sha256 and size in the manifest, as someone hand-editing it would."""
    manifest = read_manifest(bundle)
    manifest["files"][name] = {"sha256": file_sha256(bundle / name), "bytes": (bundle / name).stat().st_size}
    write_raw_manifest(bundle, manifest)


def refused(path: Path, *needles: str) -> str:
    with pytest.raises(BundleError) as info:
        load_bundle(path)
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    return message


def test_exported_bundle_loads_with_its_manifest_fields(tiny_bundle: Path, tiny_run: Path) -> None:
    config = json.loads((tiny_run / "config.json").read_text())
    bundle = load_bundle(tiny_bundle)
    assert bundle.manifest["format_version"] == FORMAT_VERSION
    assert (bundle.preset, bundle.size_px, bundle.z_dim) == (
        config["preset"],
        config["size_px"],
        config["z_dim"],
    )
    assert bundle.z_distribution == config["z_distribution"]
    assert bundle.class_names is None and not bundle.conditional
    assert bundle.batches == (1, 8)
    assert bundle.model_path(8) == tiny_bundle / "generator_b8.tflite"
    raw = (tiny_bundle / MANIFEST).read_bytes()
    assert bundle.model_id == hashlib.sha256(raw).hexdigest()[:12]
    assert set(bundle.manifest["files"]) == {"generator_b1.tflite", "generator_b8.tflite"}
    # The manifest's path is accepted as well as its folder.
    assert load_bundle(tiny_bundle / MANIFEST).model_id == bundle.model_id


def test_missing_folder_and_a_file_instead_of_a_folder(tmp_path: Path) -> None:
    refused(tmp_path / "nowhere", "does not exist")
    (tmp_path / "model.tflite").write_bytes(b"x")
    refused(tmp_path / "model.tflite", "is a file, not a bundle folder")
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", "has no manifest.json")


def test_malformed_json(bundle_copy: Path) -> None:
    text = (bundle_copy / MANIFEST).read_text()
    (bundle_copy / MANIFEST).write_text(text[: len(text) // 2])
    refused(bundle_copy, "not valid JSON")
    (bundle_copy / MANIFEST).write_bytes(b"\xff\xfe not utf-8")
    refused(bundle_copy, "not valid JSON")
    (bundle_copy / MANIFEST).write_text("[1, 2, 3]")
    refused(bundle_copy, "should hold a JSON object")


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_missing_field(bundle_copy: Path, field: str) -> None:
    manifest = read_manifest(bundle_copy)
    del manifest[field]
    write_raw_manifest(bundle_copy, manifest)
    refused(bundle_copy, f"missing the field {field!r}")


@pytest.mark.parametrize("version", [0, FORMAT_VERSION + 1])
def test_wrong_format_version(bundle_copy: Path, version: int) -> None:
    manifest = read_manifest(bundle_copy)
    manifest["format_version"] = version
    write_raw_manifest(bundle_copy, manifest)
    message = refused(bundle_copy, f"format_version {version}")
    assert ("upgrade atelier" in message) == (version > FORMAT_VERSION)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("size_px", "32", "wrong type"),
        ("size_px", True, "wrong type"),
        ("z_dim", 0, "must be positive"),
        ("z_distribution", "cauchy", "z_distribution 'cauchy'"),
        ("quantization", "int4", "quantization 'int4'"),
        ("class_names", [], "non-empty list"),
        ("class_names", ["dress", "dress"], "duplicates"),
        ("models", [], "lists no models"),
    ],
)
def test_bad_field_values(bundle_copy: Path, field: str, value: object, needle: str) -> None:
    manifest = read_manifest(bundle_copy)
    manifest[field] = value
    write_raw_manifest(bundle_copy, manifest)
    refused(bundle_copy, needle)


def test_model_entry_that_disagrees_with_the_manifest(bundle_copy: Path) -> None:
    manifest = read_manifest(bundle_copy)
    manifest["models"][0]["inputs"][0]["shape"] = [1, 999]
    write_raw_manifest(bundle_copy, manifest)
    refused(bundle_copy, "input z has shape [1, 999]")
    manifest = read_manifest(bundle_copy)
    manifest["models"][0]["inputs"][0]["shape"] = [1, manifest["z_dim"]]
    manifest["models"][0]["output"]["scale"] = None
    write_raw_manifest(bundle_copy, manifest)
    refused(bundle_copy, "no valid scale/zero_point")
    manifest["models"][0]["output"]["scale"] = 1 / 128
    manifest["models"][1]["batch"] = manifest["models"][0]["batch"]
    write_raw_manifest(bundle_copy, manifest)
    refused(bundle_copy, "must be positive and unique")


def test_missing_model_file(bundle_copy: Path) -> None:
    (bundle_copy / "generator_b8.tflite").unlink()
    refused(bundle_copy, "missing generator_b8.tflite")


def test_truncated_model_file(bundle_copy: Path) -> None:
    path = bundle_copy / "generator_b1.tflite"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    refused(bundle_copy, "generator_b1.tflite is truncated", f"the manifest says {len(data)}")


def test_changed_byte_fails_the_checksum(bundle_copy: Path) -> None:
    path = bundle_copy / "generator_b8.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte different
    path.write_bytes(bytes(data))
    refused(bundle_copy, "generator_b8.tflite fails its checksum")


def test_garbage_model_with_a_matching_checksum(bundle_copy: Path) -> None:
    # Someone replaces the model and "fixes" the manifest: the checksum passes, the file is still no model.
    (bundle_copy / "generator_b1.tflite").write_bytes(b"this is not a flatbuffer at all " * 64)
    rehash(bundle_copy, "generator_b1.tflite")
    refused(bundle_copy, "generator_b1.tflite is not a TFLite model")


def test_damaged_flatbuffer_with_a_matching_checksum_fails_at_interpreter_load(bundle_copy: Path) -> None:
    path = bundle_copy / "generator_b1.tflite"
    data = path.read_bytes()
    # Keep the 8-byte header (so the identifier check passes) and scramble the rest.
    path.write_bytes(data[:8] + bytes((b * 7 + 13) % 256 for b in data[8:]))
    rehash(bundle_copy, "generator_b1.tflite")
    bundle = load_bundle(bundle_copy)
    with pytest.raises(BundleError, match="cannot be loaded as a TFLite model"):
        DesignGenerator(bundle, batch=1)


def test_model_file_names_cannot_leave_the_bundle(bundle_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.tflite"
    shutil.copy(bundle_copy / "generator_b1.tflite", outside)
    manifest = read_manifest(bundle_copy)
    manifest["models"][0]["file"] = "../outside.tflite"
    manifest["files"]["../outside.tflite"] = manifest["files"].pop("generator_b1.tflite")
    write_raw_manifest(bundle_copy, manifest)
    refused(bundle_copy, "not a plain file name")


def test_model_path_for_a_batch_size_the_bundle_lacks(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    with pytest.raises(BundleError, match="no model for batch size 4"):
        bundle.model_path(4)
    with pytest.raises(BundleError, match="unconditional"):
        bundle.class_index("dress")
    assert issubclass(BundleError, UserError)  # the CLI prints it and exits 2

"""Bundles record no path of the machine that made them: relative to the repository, or a name and a hash."""

from __future__ import annotations

import json
import re
from pathlib import Path

from trainer.portable_paths import REPO_ROOT, folder_content_sha256, portable_if_absolute, portable_path

# An absolute path of a machine: a POSIX home, work, temp or root folder, or a Windows drive.
MACHINE_PATH = re.compile(rb"(?<![\w.])(/(work|home|tmp|root|Users|var/tmp|mnt|opt)/|[A-Z]:\\\\)")


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_no_committed_file_under_models_holds_a_machine_path() -> None:
    files = [p for p in (REPO_ROOT / "models").rglob("*") if p.is_file()]
    assert any(p.name == "manifest.json" for p in files) and any(p.suffix == ".tflite" for p in files)
    offenders = {p.relative_to(REPO_ROOT).as_posix(): m.group().decode(errors="replace")
                 for p in files for m in [MACHINE_PATH.search(p.read_bytes())] if m}
    assert not offenders, offenders
    assert MACHINE_PATH.search(b'"run_dir": "/work/main/runs/default-tshirt"')  # the pattern does catch one


def test_the_default_manifest_names_its_run_and_data_portably() -> None:
    training = json.loads((REPO_ROOT / "models" / "default" / "manifest.json").read_text())["training"]
    assert training["run_dir"] == "runs/default-all"
    assert re.fullmatch(r"\.\.\./clothing-small/train \(content sha256 [0-9a-f]{16}\)", training["config"]["data_dir"])
    assert training["summary"]["data"]["dir"] == training["config"]["data_dir"]


def test_an_exported_bundle_records_no_absolute_path(tiny_bundle: Path, tiny_run: Path, garment_dir: Path) -> None:
    """The exporter itself: the run and the data were in a temp folder outside the repository."""
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    machine = (str(tiny_run.parent), str(garment_dir))
    assert not [s for s in _strings(manifest) if s.startswith("/") or any(m in s for m in machine)]
    training = manifest["training"]
    digest = folder_content_sha256(garment_dir)[:16]
    name = f"{garment_dir.parent.name}/{garment_dir.name}"
    assert training["config"]["data_dir"] == f".../{name} (content sha256 {digest})"
    assert training["run_dir"].startswith(f".../{tiny_run.parent.name}/{tiny_run.name} (content sha256 ")


def test_paths_inside_the_repository_are_relative_to_its_root(tmp_path: Path) -> None:
    assert portable_path(REPO_ROOT / "runs" / "edge-tshirt") == "runs/edge-tshirt"
    assert portable_path(REPO_ROOT / "models" / ".." / "models" / "default") == "models/default"
    assert portable_path(tmp_path / "gone" / "data") == ".../gone/data"  # not there: its name only
    assert portable_if_absolute("../shared/datasets/x") == "../shared/datasets/x"  # as typed: nothing of the machine
    assert portable_if_absolute(f"{REPO_ROOT}/data/validation (the dataset's validation split)") == \
        "data/validation (the dataset's validation split)"


def test_the_content_hash_follows_the_files_not_the_folder_name(tmp_path: Path) -> None:
    a = tmp_path / "a" / "train"
    (a / "dress").mkdir(parents=True)
    (a / "dress" / "1.jpg").write_bytes(b"one")
    b = tmp_path / "b" / "photos"
    b.parent.mkdir()
    a.rename(b)
    first = folder_content_sha256(b)
    (b / "dress" / "1.jpg").write_bytes(b"two")
    assert folder_content_sha256(b) != first
    (b / "dress" / "1.jpg").write_bytes(b"one")
    assert folder_content_sha256(b) == first
    (b / "dress" / "1.jpg").rename(b / "dress" / "2.jpg")
    assert folder_content_sha256(b) != first

"""firmware_scripts as shell code: shellcheck, `bash -n`, strict mode, each script's command-line contract.

Also holds the helpers the other test_firmware_* modules import (run a script, make a fake bundle, snapshot a
staged tree).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware_scripts"
EXECUTABLES = ("provision.sh", "detect_hardware.sh", "healthcheck.sh", "browser.sh", "uninstall.sh")
ALL_SHELL = sorted(FIRMWARE.rglob("*.sh"))
SCRIPT_TIMEOUT_S = 120  # bounds a hang; never asserted


def run_script(
    name: str, *args: str | os.PathLike[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run firmware_scripts/NAME with ARGS, capturing output (no check: tests look at the exit status)."""
    return subprocess.run(
        [str(FIRMWARE / name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def make_bundle(folder: Path, seed: int = 0) -> Path:
    """A stand-in model bundle (manifest.json + a .tflite file): the scripts copy bundles, never load them."""
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"name": folder.name, "seed": seed}))
    (folder / "generator_int8.tflite").write_bytes(hashlib.sha256(str(seed).encode()).digest() * 64)
    return folder


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path under ROOT with its type, mode, mtime and content hash (or link target)."""
    state: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            info = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                state[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                state[rel] = ("dir", stat.S_IMODE(info.st_mode), info.st_mtime_ns)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                state[rel] = ("file", stat.S_IMODE(info.st_mode), info.st_mtime_ns, digest)
    return state


def test_shellcheck_is_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: apt-get install shellcheck (.ci/run installs it)"
    result = subprocess.run(
        [shellcheck, "--severity=style", *map(str, ALL_SHELL)],  # firmware_scripts/.shellcheckrc: follow sources
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", ALL_SHELL, ids=lambda p: str(p.relative_to(FIRMWARE)))
def test_bash_parses(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", EXECUTABLES)
def test_executables_are_strict_and_executable(name: str) -> None:
    script = FIRMWARE / name
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert re.search(r"^set -euo pipefail$", text, re.MULTILINE)
    assert os.access(script, os.X_OK)


def test_every_shell_file_is_accounted_for() -> None:
    """A new script must be added to EXECUTABLES (and so to the usage tests) or be a sourced library/step."""
    sourced = {"lib.sh"} | {f"steps/{p.name}" for p in (FIRMWARE / "steps").glob("*.sh")}
    listed = set(EXECUTABLES) | sourced
    assert {str(p.relative_to(FIRMWARE)) for p in ALL_SHELL} == listed
    for step in (FIRMWARE / "steps").glob("*.sh"):
        assert re.fullmatch(r"\d\d-[a-z-]+\.sh", step.name), step.name
        assert not os.access(step, os.X_OK), f"{step.name} is sourced by provision.sh, not run"


@pytest.mark.parametrize("name", EXECUTABLES)
def test_help_prints_usage_and_succeeds(name: str) -> None:
    result = run_script(name, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage:")


@pytest.mark.parametrize("name", EXECUTABLES)
def test_unknown_flag_prints_usage_on_stderr_and_exits_2(name: str) -> None:
    result = run_script(name, "--frobnicate")
    assert result.returncode == 2
    assert "unknown option: --frobnicate" in result.stderr
    assert "Usage:" in result.stderr
    assert result.stdout == ""


MISSING_VALUE_CASES = [
    ("provision.sh", "--root"),
    ("provision.sh", "--bundle"),
    ("provision.sh", "--bundle-name"),
    ("provision.sh", "--camera"),
    ("provision.sh", "--wheel"),
    ("provision.sh", "--wheelhouse"),
    ("provision.sh", "--python"),
    ("detect_hardware.sh", "--root"),
    ("detect_hardware.sh", "--config"),
    ("healthcheck.sh", "--url"),
    ("healthcheck.sh", "--config"),
    ("healthcheck.sh", "--wait"),
    ("healthcheck.sh", "--timeout"),
    ("browser.sh", "--config"),
    ("browser.sh", "--url"),
    ("uninstall.sh", "--root"),
]


@pytest.mark.parametrize(("name", "flag"), MISSING_VALUE_CASES)
@pytest.mark.parametrize("shape", ["at-end", "followed-by-flag", "empty"])
def test_flag_without_its_value_is_a_usage_error(name: str, flag: str, shape: str) -> None:
    args = {"at-end": [flag], "followed-by-flag": [flag, "--dry-run"], "empty": [flag, ""]}[shape]
    result = run_script(name, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{flag} needs a value" in result.stderr
    assert "Usage:" in result.stderr

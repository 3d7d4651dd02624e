"""The Makefile's fresh-machine set-up: the Debian packages the suite needs, installed when missing.

The package manager is the one part faked here (a test cannot uninstall chromium from the machine it runs on):
`dpkg`, `apt-get` and `id` stand-ins first on PATH record what the Makefile's real recipe asks of them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fixtures_browser import CHROMIUM

REPO = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")


def make(*args: str, path: str | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    assert MAKE, "GNU make is needed to test the Makefile"
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    return subprocess.run([MAKE, "--no-print-directory", "-f", str(REPO / "Makefile"), "-C", str(cwd), *args],
                          capture_output=True, text=True, timeout=60, env=env)


def makefile_variable(name: str) -> list[str]:
    """The value of a Makefile variable as make itself evaluates it."""
    result = make("--eval", f"print: ; @echo $({name})", "print")
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("tool", [CHROMIUM, "shellcheck", "systemd-analyze", "g++"])
def test_every_system_tool_the_suite_runs_comes_from_a_listed_package(tool: str) -> None:
    """Ask dpkg which package owns each tool the tests call, and hold the Makefile's TEST_DEBS to it."""
    found = shutil.which(tool)
    assert found, f"{tool} is missing here: run make test (as root) to install it"
    owner = subprocess.run(["dpkg", "-S", found], capture_output=True, text=True, check=True).stdout
    package = owner.split(":")[0]
    assert package in makefile_variable("TEST_DEBS"), f"{tool} comes from {package}, not in the Makefile's TEST_DEBS"


def package_manager(tmp_path: Path, installed: set[str], uid: int) -> str:
    """A PATH whose dpkg knows only `installed`, whose id says `uid`, and whose apt-get logs its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    scripts = {
        "dpkg": f"case ' {' '.join(sorted(installed))} ' in *\" $2 \"*) echo 'Status: install ok installed' ;; "
                "*) exit 1 ;; esac",
        "id": f"echo {uid}",
        "apt-get": f"echo \"$DEBIAN_FRONTEND $*\" >> {log}",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


@pytest.mark.parametrize(("target", "needs"), [
    ("demo", "python3.11 python3.11-venv python3.11-dev g++"),
    ("test", "python3.11 python3.11-venv python3.11-dev g++ chromium shellcheck systemd"),
])
def test_on_a_fresh_machine_the_two_commands_say_what_to_install_first(tmp_path: Path, target: str,
                                                                        needs: str) -> None:
    """Nothing installed, not root: `make demo` / `make test` stop at once with the apt-get line, build nothing."""
    path = package_manager(tmp_path, set(), uid=1000)
    result = make(target, "VENV=venv", path=path, cwd=tmp_path)
    assert result.returncode != 0
    assert f"sudo apt-get update && sudo apt-get install -y --no-install-recommends {needs}\n" in result.stderr
    assert not (tmp_path / "venv").exists() and not (tmp_path / "apt.log").exists()


def test_as_root_the_missing_packages_are_installed_after_an_update(tmp_path: Path) -> None:
    path = package_manager(tmp_path, {"python3.11", "python3.11-venv", "python3.11-dev", "g++", "systemd"}, uid=0)
    result = make("test-packages", path=path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "installing Debian packages: chromium shellcheck" in result.stdout
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert calls == ["noninteractive update -qq",
                     "noninteractive install -y -qq --no-install-recommends chromium shellcheck"]


def test_not_root_it_prints_the_command_to_run_and_fails(tmp_path: Path) -> None:
    path = package_manager(tmp_path, {"python3.11", "python3.11-dev", "g++", "systemd"}, uid=1000)
    result = make("test-packages", path=path)
    assert result.returncode != 0
    assert "missing Debian packages: python3.11-venv chromium shellcheck" in result.stderr
    assert ("sudo apt-get update && sudo apt-get install -y --no-install-recommends python3.11-venv chromium "
            "shellcheck") in result.stderr
    assert not (tmp_path / "apt.log").exists()


def test_nothing_is_installed_when_everything_is_there(tmp_path: Path) -> None:
    path = package_manager(tmp_path, set(makefile_variable("TEST_DEBS")), uid=1000)
    result = make("test-packages", path=path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert not (tmp_path / "apt.log").exists()


def test_ci_run_is_make_test(tmp_path: Path) -> None:
    """.ci/run calls `make test` (which does the set-up) with CI set, and nothing else."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "make").write_text(f"#!/bin/sh\necho \"$CI $DEBIAN_FRONTEND $*\" > {tmp_path / 'make.log'}\n")
    (bin_dir / "make").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("CI", None)
    result = subprocess.run([str(REPO / ".ci" / "run")], capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "make.log").read_text().split() == ["true", "noninteractive", "test"]

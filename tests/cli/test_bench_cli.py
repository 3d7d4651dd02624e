"""`atelier bench`: lists and runs the real bench/ scripts (their arguments passed after --)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _atelier(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "atelier", "bench", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_list_names_every_benchmark_with_what_it_measures() -> None:
    done = _atelier("--list")
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert set(listed) == {p.stem for p in BENCH.glob("*.py")}
    for name, line in listed.items():  # each with its docstring's first line
        doc = ast.get_docstring(ast.parse((BENCH / f"{name}.py").read_text()))
        assert doc and line.split(None, 1)[1] == doc.splitlines()[0], name


def test_runs_a_benchmark_with_its_own_arguments() -> None:
    done = _atelier("preprocess", "--", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("== preprocess\n") and "usage: preprocess.py" in done.stdout


def test_bad_names_and_arguments_are_clear_errors() -> None:
    unknown = _atelier("kiosk", "warp-speed")
    assert unknown.returncode == 2 and "unknown benchmark warp-speed; there are: capture" in unknown.stderr
    two = _atelier("kiosk", "preprocess", "--", "--seconds", "1")
    assert two.returncode == 2 and "name exactly one" in two.stderr
    failing = _atelier("preprocess", "--", "--no-such-option")
    assert failing.returncode == 2 and "benchmark preprocess failed (exit status 2)" in failing.stderr
    assert "unrecognized arguments: --no-such-option" in failing.stderr

"""A short smoke run of the atheris harness (tests/fuzz/fuzz_kernels.py) for every kernel entry point.

A fixed seed and run count keep it deterministic and a few seconds per target; `make fuzz` runs it for longer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
HARNESS = ROOT / "tests" / "fuzz" / "fuzz_kernels.py"
TARGETS = [
    "preprocess_frame", "postprocess", "tile", "upscale", "sharpness", "exposure", "dhash64", "hamming_nearest",
]  # fmt: skip
RUNS = 3000


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_smoke(target: str, tmp_path: Path) -> None:
    cmd = [sys.executable, str(HARNESS), target, f"-runs={RUNS}", "-seed=1", f"-artifact_prefix={tmp_path}/"]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert f"Done {RUNS} runs" in out
    assert not list(tmp_path.glob("crash-*"))


def test_fuzz_harness_knows_every_kernel() -> None:
    from edge import kernels

    r = subprocess.run([sys.executable, str(HARNESS)], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode != 0 and "usage:" in r.stderr
    assert set(TARGETS) == set(kernels.__all__) - {"BACKEND", "Exposure"}

"""The property and error tests again, against an ASan + UBSan build of the extension (CMake ATELIER_SANITIZE).

The build goes to build/sanitize (incremental across runs). Python itself is not instrumented, so the ASan
runtime is preloaded (with libstdc++, whose __cxa_throw ASan intercepts: without it the first C++ exception
kills the process); leak detection is off because CPython keeps its arenas to the end by design. pytest runs
with -s so that a sanitizer report reaches the output before the process dies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pybind11
import pytest

ROOT = Path(__file__).resolve().parents[3]
BUILD = ROOT / "build" / "sanitize"

# Puts the module at ATELIER_KERNELS_SO in sys.modules as edge._kernels, then runs pytest.
BOOTSTRAP = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("edge._kernels", os.environ["ATELIER_KERNELS_SO"])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
sys.modules["edge._kernels"] = module
from edge import _kernels
print("kernels from", _kernels.__file__, flush=True)
import pytest
sys.exit(pytest.main(sys.argv[1:]))
"""


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _build_sanitized() -> Path:
    # The venv's cmake (the Makefile installs it) first, then whatever is on PATH.
    cmake = shutil.which("cmake", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert cmake, "cmake is needed to build the sanitizer variant (pip install cmake)"
    configure = [
        cmake, "-S", str(ROOT), "-B", str(BUILD), "-DATELIER_SANITIZE=ON", "-DCMAKE_BUILD_TYPE=Debug",
        "-DCMAKE_CXX_COMPILER=g++", f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
        f"-DPython_EXECUTABLE={sys.executable}",
    ]  # fmt: skip
    if subprocess.run(configure, capture_output=True, check=False).returncode != 0:
        shutil.rmtree(BUILD, ignore_errors=True)  # a cache from another compiler or source tree: start afresh
        _run(configure)
    _run([cmake, "--build", str(BUILD), "-j2"])
    built = sorted(BUILD.glob("_kernels*.so"))
    assert len(built) == 1, built
    return built[0]


@pytest.mark.slow
def test_property_and_error_tests_pass_under_asan_and_ubsan() -> None:
    module = _build_sanitized()
    runtime = [_run(["g++", f"-print-file-name={lib}"]).stdout.strip() for lib in ("libasan.so", "libstdc++.so")]
    assert all(Path(p).is_file() for p in runtime), runtime
    env = os.environ | {
        "LD_PRELOAD": " ".join(runtime),
        "ASAN_OPTIONS": "detect_leaks=0",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        "ATELIER_HYPOTHESIS_PROFILE": "sanitize",
        "ATELIER_KERNELS_SO": str(module),
    }
    tests = ["tests/edge/kernels/test_kernels_props.py", "tests/edge/kernels/test_kernels_errors.py"]
    cmd = [sys.executable, "-c", BOOTSTRAP, "-q", "-s", "-p", "no:cacheprovider", "--noconftest", *tests]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    out = r.stdout + r.stderr
    assert "ERROR: AddressSanitizer" not in out, out[-6000:]
    assert "runtime error:" not in out, out[-6000:]
    assert r.returncode == 0, out[-6000:]
    assert f"kernels from {module}" in out
    assert " passed" in out and " failed" not in out

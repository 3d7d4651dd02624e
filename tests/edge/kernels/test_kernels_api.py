"""The kernels' surface: edge/_kernels.pyi, the compiled edge._kernels, edge.kernels and edge.kernels_ref
expose the same functions with the same parameters and defaults; the backend switch and the fallback work."""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edge import _kernels as native
from edge import kernels, kernels_ref

ROOT = Path(__file__).resolve().parents[3]
STUB = ROOT / "edge" / "_kernels.pyi"

# (name, kind, default) per parameter; kind is "pos" or "kw" (keyword-only); default is a literal or "<none>"
Params = list[tuple[str, str, Any]]
NO_DEFAULT = "<none>"


def _from_ast(fn: ast.FunctionDef) -> Params:
    a = fn.args
    pos = a.posonlyargs + a.args
    defaults = [NO_DEFAULT] * (len(pos) - len(a.defaults)) + [ast.literal_eval(d) for d in a.defaults]
    params = [(arg.arg, "pos", d) for arg, d in zip(pos, defaults, strict=True)]
    kw_defaults = [NO_DEFAULT if d is None else ast.literal_eval(d) for d in a.kw_defaults]
    return params + [(arg.arg, "kw", d) for arg, d in zip(a.kwonlyargs, kw_defaults, strict=True)]


def _from_stub() -> dict[str, Params]:
    tree = ast.parse(STUB.read_text())
    return {n.name: _from_ast(n) for n in tree.body if isinstance(n, ast.FunctionDef)}


def _from_native() -> dict[str, Params]:
    """pybind11 puts the signature on the first docstring line: name(a: object, *, b: object = 'x') -> T."""
    out = {}
    for name, obj in vars(native).items():
        if name.startswith("_") or not callable(obj):
            continue
        first_line = obj.__doc__.splitlines()[0]
        fn = ast.parse(f"def {first_line}: ...").body[0]
        assert isinstance(fn, ast.FunctionDef)
        out[name] = _from_ast(fn)
    return out


def _from_python(module: Any, names: list[str]) -> dict[str, Params]:
    out = {}
    for name in names:
        params = []
        for p in inspect.signature(getattr(module, name)).parameters.values():
            kind = "kw" if p.kind is inspect.Parameter.KEYWORD_ONLY else "pos"
            params.append((p.name, kind, NO_DEFAULT if p.default is inspect.Parameter.empty else p.default))
        out[name] = params
    return out


def test_stub_matches_the_compiled_module() -> None:
    stub = _from_stub()
    assert stub == _from_native()
    declared = {n.target.id for n in ast.parse(STUB.read_text()).body if isinstance(n, ast.AnnAssign)}
    assert declared == {n for n in vars(native) if n.isupper()}


def test_facade_and_reference_match_the_stub() -> None:
    stub = _from_stub()
    names = sorted(stub)
    assert sorted(set(kernels.__all__) - {"BACKEND", "Exposure"}) == names
    assert _from_python(kernels, names) == stub
    assert _from_python(kernels_ref, names) == stub


def test_native_backend_is_live_by_default() -> None:
    """Without ATELIER_KERNELS (a fresh process, whatever this one was started with) the extension is used:
    falling back here would hide a broken build."""
    result = _python("from pathlib import Path; from edge import kernels, _kernels; "
                     "print(kernels.BACKEND, Path(_kernels.__file__).parent.name)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["native", "edge"]
    assert "falling back" not in result.stderr.lower() and "warning" not in result.stderr.lower()


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "ATELIER_KERNELS"} | env
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120, check=False
    )


def test_env_switches_to_reference() -> None:
    r = _python(
        "import numpy as np; from edge import kernels, kernels_ref;"
        "print(kernels.BACKEND, kernels._impl is kernels_ref);"
        "print(kernels.exposure(np.zeros((2, 2), np.uint8)))",
        ATELIER_KERNELS="ref",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "ref True",
        "Exposure(mean_luma=0.0, dark_fraction=1.0, bright_fraction=0.0)",
    ]


def test_bad_env_value_is_a_user_error() -> None:
    r = _python(
        "from edge.errors import UserError\ntry:\n    import edge.kernels\nexcept UserError as e:\n    print(e)\n",
        ATELIER_KERNELS="fast",
    )
    assert r.returncode == 0, r.stderr
    assert "ATELIER_KERNELS='fast' is not a kernel backend: use 'native'" in r.stdout


def test_falls_back_to_reference_with_a_warning_when_the_extension_cannot_load() -> None:
    # None in sys.modules makes Python's import raise ImportError for that name: the extension "is missing".
    r = _python(
        "import logging, sys; logging.basicConfig(level=logging.WARNING);"
        "sys.modules['edge._kernels'] = None;"
        "import numpy as np; from edge import kernels;"
        "print(kernels.BACKEND, kernels.preprocess_frame(np.zeros((4, 6, 3), np.uint8), 2).tolist())"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ref " + str([[[-1.0] * 3] * 2] * 2)
    assert "edge._kernels could not be loaded" in r.stderr and "NumPy reference" in r.stderr


def test_concurrent_calls_from_threads_give_the_serial_results() -> None:
    # The kernels release the GIL: run them from several threads at once, compare with one-at-a-time results.
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (300, 400, 3), dtype=np.uint8) for _ in range(4)]
    serial = [(kernels.preprocess_frame(f, 64), kernels.dhash64(f), kernels.sharpness(f)) for f in frames]
    results: list[Any] = [None] * len(frames)

    def work(i: int) -> None:
        for _ in range(5):
            results[i] = (
                kernels.preprocess_frame(frames[i], 64),
                kernels.dhash64(frames[i]),
                kernels.sharpness(frames[i]),
            )

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(frames))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (a, ha, sa), (b, hb, sb) in zip(results, serial, strict=True):
        np.testing.assert_array_equal(a, b)
        assert (ha, sa) == (hb, sb)


def test_package_is_importable_without_tensorflow() -> None:
    r = _python("import sys, edge.kernels; print('tensorflow' in sys.modules, 'cv2' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False False"

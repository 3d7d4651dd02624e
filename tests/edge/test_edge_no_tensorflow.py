"""The kiosk side runs without TensorFlow: with it made unimportable, bundles still load and generate.

Each test runs a fresh interpreter whose import system refuses the blocked packages (a meta-path finder that
raises ImportError, as on a kiosk where they are not installed), so nothing imported earlier in this pytest
process can hide a stray `import tensorflow`.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from edge.bundle import load_bundle
from edge.designs import DesignGenerator

BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked in this test")
        return None
sys.meta_path.insert(0, Block())
"""


def run_blocked(blocked: list[str], body: str) -> dict:
    """Run `body` in a fresh Python with `blocked` packages unimportable; it prints one JSON line."""
    code = BLOCKER.format(blocked=blocked) + textwrap.dedent(body)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_edge_generates_without_tensorflow(tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "designs.npz"
    result = run_blocked(
        ["tensorflow", "keras", "tflite_runtime"],
        f"""
        import json, sys
        import numpy as np
        from edge.bundle import load_bundle
        from edge.designs import DesignGenerator
        from atelier.cli import main
        gen = DesignGenerator(load_bundle({str(tiny_bundle)!r}), batch=8)
        images = gen.generate(gen.sample_latents(10, seed=3))
        rc = main(["generate", {str(tiny_bundle)!r}, "--n", "10", "--seed", "3", "--out", {str(out)!r}])
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        print(json.dumps({{"backend": gen.backend, "rc": rc, "heavy": heavy, "sum": int(images.sum()),
                          "shape": list(images.shape)}}))
        """,
    )
    assert result["rc"] == 0 and result["heavy"] == [] and result["backend"] == "ai_edge_litert"
    # The same designs as this (TensorFlow-laden) process draws.
    gen = DesignGenerator(load_bundle(tiny_bundle), batch=8)
    expected = gen.generate(gen.sample_latents(10, seed=3))
    assert result["shape"] == list(expected.shape) and result["sum"] == int(expected.sum())
    with np.load(out) as data:
        np.testing.assert_array_equal(data["images"], expected)


def test_runtime_falls_back_to_tf_lite_when_litert_is_missing(tiny_bundle: Path) -> None:
    result = run_blocked(
        ["ai_edge_litert", "tflite_runtime"],
        f"""
        import json, warnings
        warnings.simplefilter("ignore")
        from edge.bundle import load_bundle
        from edge.designs import DesignGenerator
        gen = DesignGenerator(load_bundle({str(tiny_bundle)!r}), batch=1)
        images = gen.generate(gen.sample_latents(4, seed=8))
        print(json.dumps({{"backend": gen.backend, "images": images.tolist()}}))
        """,
    )
    assert result["backend"] == "tensorflow"
    gen = DesignGenerator(load_bundle(tiny_bundle), batch=1)
    np.testing.assert_array_equal(
        np.array(result["images"], dtype=np.uint8), gen.generate(gen.sample_latents(4, 8))
    )


def test_no_runtime_at_all_is_a_clear_error(tiny_bundle: Path, tmp_path: Path) -> None:
    result = run_blocked(
        ["ai_edge_litert", "tflite_runtime", "tensorflow"],
        f"""
        import json, logging, io
        from atelier.cli import main
        stream = io.StringIO()
        logging.basicConfig(stream=stream, level=logging.INFO, force=True)
        import atelier.cli
        atelier.cli.setup_logging = lambda verbose: None
        argv = ["generate", {str(tiny_bundle)!r}, "--n", "1", "--seed", "0"]
        rc = main([*argv, "--out", {str(tmp_path / "x")!r}])
        print(json.dumps({{"rc": rc, "log": stream.getvalue()}}))
        """,
    )
    assert result["rc"] == 2
    assert "no TFLite runtime is installed" in result["log"] and "pip install ai-edge-litert" in result["log"]
    assert not (tmp_path / "x").exists()

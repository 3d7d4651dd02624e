"""Open a TFLite model with the best runtime present: ai-edge-litert, then tflite-runtime, then tf.lite.

The kiosk installs `ai-edge-litert` (the LiteRT interpreter, no TensorFlow). `tflite-runtime` is the older
standalone wheel (frozen at 2.14, numpy < 2 only) still found on Coral images; `tensorflow.lite` is the last
resort on a dev host and is imported only when neither of the others is importable.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from edge.bundle import BundleError

log = logging.getLogger(__name__)

# (backend name, module to import), in order of preference. The module holds Interpreter and load_delegate,
# except TensorFlow's, whose API module is `tf.lite` (the file tensorflow/lite/__init__.py is not it).
BACKENDS: tuple[tuple[str, str], ...] = (
    ("ai_edge_litert", "ai_edge_litert.interpreter"),
    ("tflite_runtime", "tflite_runtime.interpreter"),
    ("tensorflow", "tensorflow"),
)
# Delegate name -> shared library to load (None: the built-in CPU path, XNNPACK).
DELEGATES: dict[str, str | None] = {
    "cpu": None,
    "edgetpu": "libedgetpu.so.1",
    "gpu": "libtensorflowlite_gpu_delegate.so",
}


def _runtime() -> tuple[str, Any]:
    """The first importable backend: (name, module with Interpreter)."""
    errors = []
    for name, module_name in BACKENDS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # not installed (or blocked): try the next one
            errors.append(f"{module_name}: {exc}")
            continue
        return name, (module.lite if name == "tensorflow" else module)
    raise BundleError(
        f"no TFLite runtime is installed; install one with `pip install ai-edge-litert` ({'; '.join(errors)})"
    )


def _load_delegate(module: Any, delegate: str, backend: str) -> list[Any]:
    if delegate not in DELEGATES:
        raise BundleError(f"unknown delegate {delegate!r}; choose one of {', '.join(DELEGATES)}")
    library = DELEGATES[delegate]
    if library is None:
        return []
    load = module.experimental.load_delegate if backend == "tensorflow" else module.load_delegate
    try:
        return [load(library)]
    except (ValueError, OSError, RuntimeError) as exc:
        raise BundleError(
            f"cannot load the {delegate} delegate ({library}): {exc}; "
            "install its runtime or use the cpu delegate"
        ) from exc


def load_interpreter(model_path: str | Path, num_threads: int = 2, delegate: str = "cpu") -> tuple[Any, str]:
    """Create and allocate an interpreter for a .tflite file.

    Args:
        model_path: the .tflite file.
        num_threads: CPU threads for the interpreter (XNNPACK).
        delegate: "cpu", "edgetpu" or "gpu".

    Returns:
        (interpreter, backend) where backend is "ai_edge_litert", "tflite_runtime" or "tensorflow".

    Raises:
        BundleError: no runtime, a delegate that cannot load, or a file the runtime cannot read as a model.
    """
    if num_threads < 1:
        raise BundleError(f"num_threads must be at least 1, got {num_threads}")
    backend, module = _runtime()
    delegates = _load_delegate(module, delegate, backend)
    try:
        interpreter = module.Interpreter(
            model_path=str(model_path), num_threads=num_threads, experimental_delegates=delegates or None
        )
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise BundleError(
            f"{model_path} cannot be loaded as a TFLite model by {backend} ({exc}): re-export the bundle"
        ) from exc
    log.debug("loaded %s with %s (%d threads, %s)", model_path, backend, num_threads, delegate)
    return interpreter, backend

"""Full int8 TFLite conversion through a SavedModel with a static batch-1 `image` signature: the path the inspire
encoder and the 2x upscaler share (the generator's exporter has its own, with z and class inputs)."""

from __future__ import annotations

import tempfile
import warnings
from typing import Any

import numpy as np

from edge.errors import UserError


def convert_image_model_int8(model: Any, side_px: int, pictures: np.ndarray, what: str) -> bytes:
    """`model` (image (1, side, side, 3) float in [-1, 1] -> outputs) as int8 TFLite bytes (int8 input and
    outputs), calibrated on `pictures` (N, side, side, 3) float.

    Raises:
        UserError: the conversion failed (its message cut to 2000 characters).
    """
    import tensorflow as tf

    signature = [tf.TensorSpec((1, side_px, side_px, 3), tf.float32, name="image")]

    def representative():
        for picture in pictures:
            yield {"image": picture[None].astype(np.float32)}

    with tempfile.TemporaryDirectory(prefix="atelier-int8-") as saved:
        model.export(saved, format="tf_saved_model", input_signature=signature, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
                return converter.convert()
        except Exception as exc:  # ConverterError and friends, with long MLIR dumps
            raise UserError(f"TFLite conversion of the {what} failed: {str(exc)[:2000]}") from exc

"""The float Keras generator an encoder trains against, from a run folder or from an int8 bundle alone.

A run folder holds `generator.keras` (the EMA generator) and is used as is. A bundle holds only TFLite models,
yet a fresh clone must be able to train an encoder for `models/default`, and the reconstruction loss needs
gradients through the generator. So for a bundle we rebuild the float generator from the int8 graph:

- the architecture is the one `atelier export` converted: `build_generator(config)` from the manifest's
  training config, after `prepare_for_tflite` (BatchNorm folded into the conv before it, nearest resizes), so
  the Keras model has exactly one Dense/Conv2D layer per FULLY_CONNECTED/CONV_2D op of the TFLite graph, in
  the same order;
- each weight tensor is dequantized with the TFLite int8 spec, w = scale_c * q (symmetric per output channel,
  zero point 0), and each int32 bias with its own scale (input scale x weight scale), b = scale_c * q.

The rebuilt model computes the int8 generator's function without the activation rounding; its PSNR against the
int8 model is measured and reported (about the export's own parity figure, 35 dB for the default model).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import MANIFEST, Bundle, load_bundle
from edge.designs import DesignGenerator, sample_prior
from edge.errors import UserError
from trainer import run_folder

log = logging.getLogger(__name__)

PARITY_N = 32  # latents the rebuilt generator is compared on against the int8 model
PARITY_SEED = 7


@dataclass
class GeneratorSource:
    """A float generator and what it needs (the prior, the classes), with where it came from."""

    model: Any  # keras.Model: inputs z (and class_onehot), output tanh images
    kind: str  # "run" (generator.keras) or "bundle" (rebuilt from the int8 model)
    path: Path
    size_px: int
    z_dim: int
    z_distribution: str
    class_names: list[str] | None  # None: unconditional
    config: dict[str, Any]  # the training config (config.json or the manifest's copy)
    bundle: Bundle | None  # the bundle, when the source is one
    rebuild_psnr_db: float | None = None  # bundle only: the rebuilt float G against the int8 G

    @property
    def conditional(self) -> bool:
        return self.class_names is not None

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path), "rebuild_psnr_db": self.rebuild_psnr_db}


def load_generator_source(path: str | Path) -> GeneratorSource:
    """The float generator of a run folder (RUN_DIR/generator.keras) or a bundle folder (rebuilt from int8).

    Raises:
        UserError: the folder is neither, or the bundle's graph is not one this module can rebuild.
    """
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a folder: give a run folder (atelier train --out) or a bundle folder")
    if (path / MANIFEST).is_file():
        return _from_bundle(load_bundle(path))
    if (path / run_folder.CONFIG).is_file():
        config = run_folder.read_config(path)
        model = run_folder.load_generator(path)
        conditional = bool(config.get("conditional"))
        return GeneratorSource(
            model=model, kind="run", path=path, size_px=int(config["size_px"]), z_dim=int(config["z_dim"]),
            z_distribution=str(config["z_distribution"]),
            class_names=list(config["class_names"]) if conditional else None, config=config, bundle=None,
        )
    raise UserError(f"{path} holds neither {MANIFEST} (a bundle) nor {run_folder.CONFIG} (a run folder)")


def _from_bundle(bundle: Bundle) -> GeneratorSource:
    from trainer.config import TrainConfig
    from trainer.export_graph import prepare_for_tflite
    from trainer.networks import build_generator

    config = (bundle.manifest.get("training") or {}).get("config")
    if not isinstance(config, dict):
        raise UserError(f"{bundle.path}/{MANIFEST} records no training config: pass the run folder instead")
    if bundle.quantization != "int8":
        raise UserError(f"{bundle.path} is {bundle.quantization}; rebuilding a float generator needs an int8 bundle "
                        "(or pass the run folder)")
    cfg = TrainConfig.from_json(config)
    prepared, _ = prepare_for_tflite(build_generator(cfg))
    _load_int8_weights(prepared, bundle.model_path(bundle.batches[0]))
    psnr = design_psnr(prepared, bundle)
    if psnr < 20.0:
        raise UserError(f"the float generator rebuilt from {bundle.path} differs from its int8 model "
                        f"({psnr:.1f} dB PSNR): pass the run folder instead")
    log.info("rebuilt the float generator of %s from its int8 model: %.1f dB PSNR against it", bundle.path, psnr)
    return GeneratorSource(
        model=prepared, kind="bundle", path=bundle.path, size_px=bundle.size_px, z_dim=bundle.z_dim,
        z_distribution=bundle.z_distribution,
        class_names=list(bundle.class_names) if bundle.class_names else None, config=config, bundle=bundle,
        rebuild_psnr_db=round(psnr, 2),
    )


def _dequantize(interpreter: Any, index: int) -> np.ndarray:
    """Real values of a constant int8/int32 tensor: scale (per output channel, axis 0) x (q - zero point)."""
    detail = next(t for t in interpreter.get_tensor_details() if t["index"] == index)
    q = interpreter.get_tensor(index).astype(np.float64)
    params = detail["quantization_parameters"]
    scales, zeros = np.asarray(params["scales"], np.float64), np.asarray(params["zero_points"], np.float64)
    if scales.size == 0:  # a float tensor
        return q
    shape = [-1] + [1] * (q.ndim - 1) if scales.size > 1 else [1] * q.ndim
    return (q - zeros.reshape(shape)) * scales.reshape(shape)


def _load_int8_weights(model: Any, tflite_path: Path) -> None:
    """Fill every Dense/Conv2D of `model` from the matching FULLY_CONNECTED/CONV_2D op of the TFLite model."""
    import keras

    from edge.litert import load_interpreter

    interpreter, _ = load_interpreter(tflite_path, num_threads=1)
    ops = [op for op in interpreter._get_ops_details() if op["op_name"] in ("FULLY_CONNECTED", "CONV_2D")]
    linear = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense | keras.layers.Conv2D)]
    if len(ops) != len(linear):
        raise UserError(f"{tflite_path} has {len(ops)} dense/conv ops, the architecture in its manifest has "
                        f"{len(linear)} layers: this bundle cannot be rebuilt in float; pass the run folder")
    for layer, op in zip(linear, ops, strict=True):
        weight = _dequantize(interpreter, int(op["inputs"][1]))
        bias = _dequantize(interpreter, int(op["inputs"][2])) if len(op["inputs"]) > 2 else None
        if op["op_name"] == "FULLY_CONNECTED":
            kernel = weight.T  # TFLite (out, in) -> Keras (in, out)
        else:
            kernel = weight.transpose(1, 2, 3, 0)  # TFLite (out, kh, kw, in) -> Keras (kh, kw, in, out)
        want = tuple(layer.kernel.shape)
        if kernel.shape != want:
            raise UserError(f"{tflite_path}: op {op['index']} has weights {kernel.shape}, layer {layer.name} "
                            f"expects {want}: pass the run folder instead")
        values = [kernel.astype(np.float32)]
        if layer.use_bias:
            values.append((np.zeros(want[-1]) if bias is None else bias).astype(np.float32))
        layer.set_weights(values)


def check_generator_matches(source: GeneratorSource, bundle: Bundle) -> None:
    """Refuse a bundle that was not exported from this run's generator (other shapes, or its designs differ)."""
    run_dir = source.path
    mine = (source.size_px, source.z_dim, tuple(source.class_names or ()))
    theirs = (bundle.size_px, bundle.z_dim, tuple(bundle.class_names or ()))
    if mine != theirs:
        raise UserError(f"bundle {bundle.path} was not exported from {run_dir}: it draws {theirs[0]} px from "
                        f"z_dim {theirs[1]} with classes {list(theirs[2]) or 'none'}, the run {mine[0]} px from "
                        f"z_dim {mine[1]} with classes {list(mine[2]) or 'none'}")
    psnr = design_psnr(source.model, bundle)
    if psnr < 20.0:
        raise UserError(f"bundle {bundle.path} was not exported from {run_dir}: their designs differ "
                        f"({psnr:.1f} dB PSNR); export the run first (atelier export) or pass its bundle")


def design_psnr(model: Any, bundle: Bundle) -> float:
    """PSNR (dB) of a float generator's designs against the bundle's int8 designs on PARITY_N fixed latents."""
    from trainer.run_folder import to_uint8

    z = sample_prior(PARITY_N, bundle.z_dim, bundle.z_distribution, PARITY_SEED)
    ids = np.arange(PARITY_N) % len(bundle.class_names) if bundle.class_names else None
    int8 = DesignGenerator(bundle, batch=bundle.batches[0], num_threads=2).generate(z, ids)
    feed: dict[str, np.ndarray] = {"z": z}
    if ids is not None:
        feed["class_onehot"] = np.eye(len(bundle.class_names or ()), dtype=np.float32)[ids]
    rebuilt = to_uint8(model(feed, training=False))
    mse = float(np.mean((rebuilt.astype(np.float64) - int8.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else 10.0 * math.log10(255.0**2 / mse)

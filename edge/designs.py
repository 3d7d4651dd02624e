"""Designs from a bundle: latents from the bundle's prior -> TFLite generator -> uint8 RGB pictures.

`DesignGenerator` is what the kiosk and `atelier generate` run. Quantized inputs follow the TFLite int8 spec,
q = round(x / scale) + zero_point clipped to the dtype's range; the int8 tanh output (scale 1/128, zero point
0) is turned into pixels by `edge.kernels.postprocess`: x = scale * (q - zero_point), pixel = round((x + 1) * 127.5).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge.bundle import Bundle, BundleError, ModelEntry, TensorQuant, load_bundle
from edge.errors import UserError
from edge.kernels import postprocess, tile
from edge.litert import load_interpreter

log = logging.getLogger(__name__)

# `generate_to` holds every design in memory before writing: 10000 designs of 128 px are about 0.5 GB.
MAX_DESIGNS_PER_CALL = 10_000
_INT_RANGES: dict[str, tuple[int, int]] = {"int8": (-128, 127), "uint8": (0, 255)}


def quantize(x: np.ndarray, tensor: TensorQuant) -> np.ndarray:
    """A float array -> the tensor's dtype (int8/uint8 with its scale and zero point, or float)."""
    if tensor.dtype in _INT_RANGES:
        lo, hi = _INT_RANGES[tensor.dtype]
        q = np.round(x.astype(np.float32) / np.float32(tensor.scale)) + tensor.zero_point
        return np.clip(q, lo, hi).astype(tensor.dtype)
    return x.astype(tensor.dtype)


def sample_prior(n: int, z_dim: int, distribution: str, seed: int) -> np.ndarray:
    """n latents (n, z_dim) float32 from U(-1, 1) ("uniform") or N(0, 1) ("normal"), deterministic in `seed`.

    Row i depends only on the seed and i, not on n: a longer draw extends a shorter one.
    """
    rng = np.random.default_rng(seed)
    if distribution == "uniform":
        return rng.uniform(-1.0, 1.0, size=(n, z_dim)).astype(np.float32)
    return rng.standard_normal(size=(n, z_dim), dtype=np.float32)


class DesignGenerator:
    """Runs one model of a bundle; thread-safe (one interpreter, guarded by a lock).

    Args:
        bundle: a bundle from `load_bundle`.
        batch: which of the bundle's static batch sizes to run (designs are made in chunks of it).
        num_threads: interpreter CPU threads.
        delegate: "cpu", "edgetpu" or "gpu" (see `edge.litert`).
    """

    def __init__(self, bundle: Bundle, batch: int = 1, num_threads: int = 2, delegate: str = "cpu") -> None:
        self.bundle = bundle
        self.batch = batch
        path = bundle.model_path(batch)  # raises BundleError for a batch size the bundle lacks
        self.entry: ModelEntry = bundle.models[batch]
        self.interpreter, self.backend = load_interpreter(path, num_threads=num_threads, delegate=delegate)
        self._lock = threading.Lock()
        self._input_indices = self._match_inputs()
        output = self.interpreter.get_output_details()
        spec = self.entry.output
        if (
            len(output) != 1
            or tuple(output[0]["shape"]) != spec.shape
            or np.dtype(output[0]["dtype"]).name != spec.dtype
        ):
            raise BundleError(
                f"{path} does not have the single {spec.dtype} output {list(spec.shape)} "
                "its manifest describes: re-export the bundle"
            )
        self._output_index = output[0]["index"]

    def _match_inputs(self) -> list[int]:
        """Interpreter tensor index of each manifest input, by signature name when the model has one."""
        details = self.interpreter.get_input_details()
        by_name: dict[str, dict] = {}
        signatures = self.interpreter.get_signature_list()
        if len(signatures) == 1:
            key = next(iter(signatures))
            by_name = dict(self.interpreter.get_signature_runner(key).get_input_details())
        indices = []
        for i, tensor in enumerate(self.entry.inputs):
            d = by_name.get(tensor.name) or (details[i] if i < len(details) else None)
            if d is None or tuple(d["shape"]) != tensor.shape or np.dtype(d["dtype"]).name != tensor.dtype:
                raise BundleError(
                    f"{self.bundle.model_path(self.batch)} does not match its manifest "
                    f"(input {tensor.name or i} "
                    f"should be {tensor.dtype} {list(tensor.shape)}): re-export the bundle"
                )
            indices.append(d["index"])
        if len(details) != len(indices):
            raise BundleError(
                f"{self.bundle.model_path(self.batch)} has {len(details)} inputs, its manifest "
                f"{len(indices)}: re-export the bundle"
            )
        return indices

    @property
    def size_px(self) -> int:
        """Side of the square designs."""
        return self.bundle.size_px

    def sample_latents(self, n: int, seed: int) -> np.ndarray:
        """`n` latent vectors (n, z_dim) float32 from the bundle's prior, deterministic in `seed`."""
        if n < 1:
            raise UserError(f"the number of designs must be at least 1, got {n}")
        if seed < 0:
            raise UserError(f"the seed must be a non-negative integer, got {seed}")
        return sample_prior(n, self.bundle.z_dim, self.bundle.z_distribution, seed)

    def _class_onehot(self, class_ids: Sequence[int] | None, n: int) -> np.ndarray | None:
        names = self.bundle.class_names
        if names is None:
            if class_ids is not None:
                raise UserError(f"bundle {self.bundle.name!r} is unconditional: it takes no class ids")
            return None
        # No class given for a conditional bundle: go round the classes, so n designs show every class.
        ids = np.arange(n) % len(names) if class_ids is None else np.asarray(class_ids)
        if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
            raise UserError(f"class_ids must be {n} integers, one per latent vector")
        if ids.size and (ids.min() < 0 or ids.max() >= len(names)):
            raise UserError(f"class ids must be in 0..{len(names) - 1} ({', '.join(names)})")
        return np.eye(len(names), dtype=np.float32)[ids]

    def generate(self, z: np.ndarray, class_ids: Sequence[int] | None = None) -> np.ndarray:
        """Designs for latents `z` (n, z_dim): uint8 (n, size_px, size_px, 3) RGB.

        Args:
            z: latent vectors, e.g. from `sample_latents`.
            class_ids: one class id per row for a conditional bundle; None goes round the classes.
                Must be None for an unconditional bundle.
        """
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] != self.bundle.z_dim:
            raise UserError(f"z must have shape (n >= 1, {self.bundle.z_dim}), got {z.shape}")
        if not np.isfinite(z).all():
            raise UserError("z has NaN or infinite values")
        n = z.shape[0]
        onehot = self._class_onehot(class_ids, n)
        feeds = [z] if onehot is None else [z, onehot]
        out = np.empty((n, self.size_px, self.size_px, 3), dtype=np.uint8)
        b = self.batch
        for start in range(0, n, b):
            stop = min(start + b, n)
            chunk = [f[start:stop] for f in feeds]
            if stop - start < b:  # the model has a static batch: pad the last chunk with zeros
                chunk = [np.concatenate([c, np.zeros((b - len(c), c.shape[1]), c.dtype)]) for c in chunk]
            raw = self._invoke(chunk)
            out[start:stop] = self._to_pixels(raw[: stop - start])
        return out

    def _invoke(self, feeds: list[np.ndarray]) -> np.ndarray:
        with self._lock:
            for index, tensor, value in zip(self._input_indices, self.entry.inputs, feeds, strict=True):
                self.interpreter.set_tensor(index, quantize(value, tensor))
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self._output_index)

    def _to_pixels(self, raw: np.ndarray) -> np.ndarray:
        spec = self.entry.output
        if spec.scale is None:
            return postprocess(raw.astype(np.float32))
        return postprocess(raw, scale=spec.scale, zero_point=spec.zero_point)


def grid(images: np.ndarray, cols: int | None = None, pad_px: int = 2) -> np.ndarray:
    """Tile (n, H, W, 3) uint8 designs into one picture with a white border (cols: about sqrt(n))."""
    return tile(images, cols or math.ceil(math.sqrt(len(images))), pad=pad_px, background=255)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(rgb).save(tmp, format="PNG")
    os.replace(tmp, path)


def design_file_names(model_id: str, seed: int, n: int) -> list[str]:
    """PNG names for n designs: `<model_id>-s<seed>-<index>.png` (one seed, one set of names)."""
    return [f"{model_id}-s{seed}-{i:04d}.png" for i in range(n)]


def generate_to(
    bundle_dir: str | Path,
    n: int,
    out: str | Path,
    seed: int,
    class_name: str | None = None,
    as_grid: bool = False,
    batch: int | None = None,
    num_threads: int = 2,
    overwrite: bool = False,
) -> list[Path]:
    """Make `n` designs from a bundle and write them: a folder of PNGs, one grid PNG, or a .npz.

    Args:
        bundle_dir: the bundle folder (verified on load).
        n: how many designs (>= 1).
        out: a folder for PNGs; a `.png` file with `as_grid`; or a `.npz` file (uint8 array "images",
            n x H x W x 3, with the "z" latents, "class_ids", "seed" and "model_id").
        seed: seeds the latents; the same seed and bundle give the same designs.
        class_name: the class to draw (conditional bundles); None goes round the classes.
        as_grid: write one grid picture instead of one PNG per design (a conditional bundle without `class_name`
            and n a multiple of its classes: one column per class, in the bundle's class order).
        batch: which model to run; default the largest batch size that is not more than n.
        num_threads: interpreter CPU threads.
        overwrite: replace existing output files instead of refusing.

    Returns:
        The files written.

    Raises:
        UserError: bad n, class or output path, or a bundle that fails verification.
    """
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    if n > MAX_DESIGNS_PER_CALL:
        raise UserError(
            f"--n must be at most {MAX_DESIGNS_PER_CALL} (all designs are held in memory); "
            "run again with other seeds for more"
        )
    if seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {seed}")
    if num_threads < 1:
        raise UserError(f"--threads must be at least 1, got {num_threads}")
    out = Path(out)
    suffix = out.suffix.lower()
    if as_grid and suffix != ".png":
        raise UserError(f"with --grid, OUT is the grid picture and must end in .png (got {out})")
    if not as_grid and suffix == ".png":
        raise UserError(f"OUT {out} ends in .png: add --grid for one grid picture, or give a folder for PNGs")
    bundle = load_bundle(bundle_dir)
    if class_name is not None:
        class_ids = np.full(n, bundle.class_index(class_name), dtype=np.int64)
    else:  # conditional: go round the classes; unconditional: no classes
        class_ids = np.arange(n) % len(bundle.class_names) if bundle.class_names else None
    single_file = suffix == ".npz" or as_grid
    # Check the destination before running the model: a refusal should cost nothing.
    if single_file:
        if out.exists() and not out.is_file():
            raise UserError(f"OUT {out} exists and is not a file")
        if out.exists() and not overwrite:
            raise UserError(f"{out} already exists: pass --overwrite or choose another OUT")
        paths = [out]
    else:
        if out.exists() and not out.is_dir():
            raise UserError(f"OUT {out} is a file: give a folder for PNGs, a .npz file, or --grid with a .png")
        paths = [out / name for name in design_file_names(bundle.model_id, seed, n)]
        clash = [p for p in paths if p.exists()]
        if clash and not overwrite:
            raise UserError(
                f"{len(clash)} design files already exist in {out} (e.g. {clash[0].name}): "
                "pass --overwrite or choose another folder"
            )
    if batch is None:
        batch = max((b for b in bundle.batches if b <= n), default=bundle.batches[0])
    gen = DesignGenerator(bundle, batch=batch, num_threads=num_threads)
    z = gen.sample_latents(n, seed)
    images = gen.generate(z, class_ids)
    if single_file:
        out.parent.mkdir(parents=True, exist_ok=True)
    else:
        out.mkdir(parents=True, exist_ok=True)
    if as_grid:
        # Going round the classes of a conditional model: one class per column when the count allows it.
        k = len(bundle.class_names or [])
        by_class = class_name is None and k > 1 and n % k == 0
        _write_png(out, grid(images, cols=k if by_class else None))
    elif suffix == ".npz":
        tmp = out.with_name(f".{out.stem}.tmp.npz")
        np.savez_compressed(
            tmp,
            images=images,
            z=z,
            class_ids=np.asarray([] if class_ids is None else class_ids, np.int64),
            seed=np.int64(seed),
            model_id=np.str_(bundle.model_id),
        )
        os.replace(tmp, out)
    else:
        for path, image in zip(paths, images, strict=True):
            _write_png(path, image)
    log.info("wrote %d designs (%s, batch %d, %s) to %s", n, bundle.model_id, batch, gen.backend, out)
    return paths

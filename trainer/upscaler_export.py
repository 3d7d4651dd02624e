"""`atelier train-upscaler`: train the 2x upscaler on a bundle's photos and write it int8 into the bundle.

Full int8 through a SavedModel with a static batch-1 signature (image (1, S, S, 3) -> (1, 2S, 2S, 3)), calibrated
on photos shrunk to the bundle's size and on the bundle's own designs (what it enlarges at the kiosk). The
manifest's `upscaler` entry holds the file's hash, its tensors, MACs, the training report, the Edge TPU lint,
**parity** (the int8 upscaler run by the kiosk's own `edge.upscaler` against the float one, PSNR on held-out
photos and designs) and the comparison with the bilinear kernel on held-out photos (`trainer.upscaler`). Only
`upscaler_b1.tflite` and `manifest.json` change; the manifest is rewritten with hashes, so the model ID changes.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import load_bundle, write_manifest
from edge.designs import DesignGenerator
from edge.errors import UserError
from trainer.int8_convert import convert_image_model_int8
from trainer.upscaler import (
    FACTOR,
    MAX_MACS,
    UPSCALER_FILE,
    UpscalerTrainConfig,
    area_half,
    compare_with_bilinear,
    psnr_db,
    train_upscaler,
    upscaler_macs,
)

log = logging.getLogger(__name__)

MIN_PARITY_PSNR_DB = 30.0  # int8 against float enlargements, median over the parity pictures
N_CALIBRATION = 160
N_PARITY = 48


def _entry(path: Path) -> dict[str, Any]:
    from edge.litert import load_interpreter
    from trainer.export import _tensor_entry

    interpreter, _ = load_interpreter(path, num_threads=1)
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise UserError(f"{path} has {len(inputs)} inputs and {len(outputs)} outputs; expected one of each")
    return {"file": path.name, "input": _tensor_entry(inputs[0], "image"), "output": _tensor_entry(outputs[0], "image")}


def _to_unit(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / 127.5 - 1.0


def _float_enlarge(model: Any, small: np.ndarray) -> np.ndarray:
    from edge.kernels import postprocess

    out = [np.asarray(model(_to_unit(small[i : i + 16]), training=False)) for i in range(0, len(small), 16)]
    return postprocess(np.concatenate(out).astype(np.float32))


def run_train_upscaler(bundle_dir: str | Path, data: str | Path, cfg: UpscalerTrainConfig, *,
                       command: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Train on DATA's photos of the bundle's classes, export int8 into the bundle; returns the manifest entry."""
    from edge.upscaler import Upscaler
    from trainer.edgetpu_lint import lint_model
    from trainer.eval_photos import load_real
    from trainer.portable_paths import portable_if_absolute, portable_path

    bundle_dir = Path(bundle_dir)
    bundle = load_bundle(bundle_dir)
    cfg.validate()
    classes = list(bundle.class_names) if bundle.class_names else \
        list((bundle.manifest.get("training") or {}).get("config", {}).get("class_names") or []) or None
    real = load_real(data, FACTOR * bundle.size_px, classes)
    model, training = train_upscaler(real.train, bundle.size_px, cfg, progress=progress)
    macs = upscaler_macs(model)
    if macs > MAX_MACS:
        raise UserError(f"the upscaler needs {macs / 1e6:.0f} MMAC per design, over the {MAX_MACS / 1e6:.0f} budget")
    gen = DesignGenerator(bundle, batch=max(bundle.batches), num_threads=2)
    designs = gen.generate(gen.sample_latents(N_CALIBRATION // 2 + N_PARITY // 2, 7))
    rng = np.random.default_rng(cfg.seed)
    photos_small = np.clip(np.rint(area_half(real.train[rng.permutation(len(real.train))[: N_CALIBRATION // 2]])),
                           0, 255).astype(np.uint8)
    calibration = _to_unit(np.concatenate([photos_small, designs[: N_CALIBRATION // 2]]))
    held_small = np.clip(np.rint(area_half(real.heldout[:N_PARITY // 2])), 0, 255).astype(np.uint8)
    parity_small = np.concatenate([held_small, designs[N_CALIBRATION // 2 :]])
    training.update(command=[portable_if_absolute(str(c)) for c in command or []], data=portable_path(data),
                    heldout=portable_if_absolute(real.split))
    staging = Path(tempfile.mkdtemp(prefix=f".{bundle_dir.name}.upscaler-", dir=bundle_dir.parent))
    try:
        for path in bundle_dir.iterdir():
            if path.is_file():
                shutil.copy2(path, staging / path.name)
        (staging / UPSCALER_FILE).write_bytes(convert_image_model_int8(model, bundle.size_px, calibration, "upscaler"))
        manifest = dict(bundle.manifest)
        manifest["upscaler"] = entry = _entry(staging / UPSCALER_FILE)
        write_manifest(staging, manifest)
        upscaler = Upscaler(load_bundle(staging))
        int8 = np.stack([upscaler.upscale2x(p) for p in parity_small])
        each = [psnr_db(a[None], b[None]) for a, b in zip(int8, _float_enlarge(model, parity_small), strict=True)]
        parity = {"reference": "float Keras upscaler", "n_pictures": len(each),
                  "psnr_db_median": round(float(np.median(each)), 2), "psnr_db_worst": round(float(np.min(each)), 2),
                  "min_psnr_db": MIN_PARITY_PSNR_DB, "passed": float(np.median(each)) >= MIN_PARITY_PSNR_DB}
        if not parity["passed"]:
            raise UserError(f"the int8 upscaler fails parity: median {parity['psnr_db_median']:.1f} dB against the "
                            f"float one, below {MIN_PARITY_PSNR_DB:g} dB; nothing was written")
        versus = compare_with_bilinear(lambda small: np.stack([upscaler.upscale2x(p) for p in small]), real.heldout)
        entry.update(macs=macs, params=int(model.count_params()), training=training, parity=parity,
                     versus_bilinear=versus, edgetpu_lint=lint_model(staging / UPSCALER_FILE))
        write_manifest(staging, manifest)
        for name in (UPSCALER_FILE, "manifest.json"):  # the generator and encoder files are unchanged
            (staging / name).chmod(0o644)
            os.replace(staging / name, bundle_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote %s into %s: %.0f KiB, %.0f MMAC; held-out PSNR %.2f dB (bilinear %.2f)", UPSCALER_FILE,
             bundle_dir, (bundle_dir / UPSCALER_FILE).stat().st_size / 1024, macs / 1e6,
             versus["psnr_db"]["ours"], versus["psnr_db"]["bilinear"])
    return entry

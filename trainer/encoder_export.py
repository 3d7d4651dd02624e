"""Export a trained encoder into a bundle: `encoder_b1.tflite` beside the generator, with its own parity report.

The float encoder is made ready for TFLite as the generator is (`trainer.export_graph`: BatchNorm folded into the
conv before it) and converted through a SavedModel with a static batch-1 signature to full int8 (input, weights,
activations, outputs). Calibration pictures are the ones the encoder meets: real photos and generated designs
through the same camera-like augmentation as training. Parity compares the int8 encoder, run by the kiosk's own
`edge.inspire.PhotoEncoder`, with the float Keras encoder on fixed pictures: latent error, cosine and (for a
conditional bundle) class agreement, and the PSNR of the bundle's int8 designs drawn from the two latents, which is
what a shopper would see differ. The manifest is rewritten with `edge.bundle.write_manifest` (hashes included).
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
from trainer.encoder import ENCODER_FILE, MAX_MACS, EncoderSpec, encoder_macs, output_names
from trainer.int8_convert import convert_image_model_int8

log = logging.getLogger(__name__)

MIN_DESIGN_PSNR_DB = 20.0  # parity floor: median PSNR of designs from the int8 latent vs the float latent
REPRESENTATIVE_N = 200


def _entry(path: Path, spec: EncoderSpec) -> dict[str, Any]:
    """The manifest's encoder entry: input and outputs as the interpreter's signature names them."""
    from edge.litert import load_interpreter
    from trainer.export import _tensor_entry

    interpreter, _ = load_interpreter(path, num_threads=1)
    runner = interpreter.get_signature_runner(next(iter(interpreter.get_signature_list())))
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    names = output_names(spec)
    if list(inputs) != ["image"] or sorted(outputs) != sorted(names):
        raise UserError(f"{path} has inputs {list(inputs)} and outputs {sorted(outputs)}; expected image -> {names}")
    return {"file": path.name, "input": _tensor_entry(inputs["image"], "image"),
            "outputs": [_tensor_entry(outputs[name], name) for name in names]}


def measure_parity(model: Any, bundle_dir: Path, pictures: np.ndarray) -> dict[str, Any]:
    """The int8 encoder (edge.inspire, as the kiosk runs it) against the float encoder on `pictures`."""
    from edge.inspire import PhotoEncoder, project_to_prior
    from trainer.export import image_parity

    bundle = load_bundle(bundle_dir)
    encoder = PhotoEncoder(bundle, num_threads=2)
    float_out = model(pictures.astype(np.float32), training=False)
    z_float = np.stack([project_to_prior(u, bundle.z_distribution) for u in np.asarray(float_out["z"])])
    encodings = [encoder.encode_input(p.astype(np.float32)) for p in pictures]
    z_int8 = np.stack([e.z for e in encodings])
    cos = np.sum(z_float * z_int8, 1) / (np.linalg.norm(z_float, axis=1) * np.linalg.norm(z_int8, axis=1) + 1e-12)
    ids_float = ids_int8 = None
    if bundle.class_names:
        ids_float = np.argmax(np.asarray(float_out["class_logits"]), axis=1)
        ids_int8 = np.asarray([e.class_id for e in encodings])
    gen = DesignGenerator(bundle, batch=bundle.batches[0], num_threads=2)
    psnrs = [image_parity(gen.generate(zf[None], None if ids_float is None else [int(ids_float[i])]),
                          gen.generate(zi[None], None if ids_float is None else [int(ids_float[i])]))["psnr_db"]
             for i, (zf, zi) in enumerate(zip(z_float, z_int8, strict=True))]
    median = float(np.median(psnrs))
    report = {
        "reference": "float Keras encoder, inference mode; designs by the bundle's int8 generator",
        "n_pictures": len(pictures),
        "latent_rmse": round(float(np.sqrt(np.mean((z_float - z_int8) ** 2))), 4),
        "latent_cosine_mean": round(float(np.mean(cos)), 4),
        "latent_cosine_min": round(float(np.min(cos)), 4),
        "design_psnr_db_median": round(median, 2),
        "design_psnr_db_worst": round(float(np.min(psnrs)), 2),
        "min_design_psnr_db": MIN_DESIGN_PSNR_DB,
        "passed": median >= MIN_DESIGN_PSNR_DB,
    }
    if ids_float is not None:
        report["class_agreement"] = round(float(np.mean(ids_float == ids_int8)), 4)
    return report


def export_encoder(model: Any, spec: EncoderSpec, bundle_dir: str | Path, calibration: np.ndarray,
                   parity_pictures: np.ndarray, training: dict[str, Any], *, force: bool = False) -> dict[str, Any]:
    """Write `encoder_b1.tflite` into the bundle and its entry into the manifest (replacing an older encoder).

    Args:
        model: the float Keras encoder.
        spec: what it was built for (must match the bundle).
        bundle_dir: the bundle folder (verified first; its generator files are not touched).
        calibration: float pictures in [-1, 1] (N, S, S, 3) that calibrate int8 ranges.
        parity_pictures: float pictures for the parity report (others than the calibration ones).
        training: the training report to record (command, data, steps, losses).
        force: keep an encoder that fails the parity floor (recorded in the manifest).

    Returns:
        The manifest's new encoder entry.

    Raises:
        UserError: the encoder does not fit the bundle or the budget, conversion failed, or parity is below the
            floor without `force` (then the bundle is left as it was).
    """
    from trainer.edgetpu_lint import lint_model
    from trainer.export_graph import prepare_for_tflite

    bundle_dir = Path(bundle_dir)
    bundle = load_bundle(bundle_dir)
    if (spec.size_px, spec.z_dim, spec.n_classes) != (bundle.size_px, bundle.z_dim, len(bundle.class_names or [])):
        raise UserError(f"the encoder is for {spec.size_px} px, z_dim {spec.z_dim}, {spec.n_classes} classes; "
                        f"bundle {bundle_dir} is {bundle.size_px} px, z_dim {bundle.z_dim}, "
                        f"{len(bundle.class_names or [])} classes")
    macs = encoder_macs(model)
    if macs > MAX_MACS:
        raise UserError(f"the encoder needs {macs / 1e9:.2f} GMAC per photo, over the {MAX_MACS / 1e9:.1f} budget")
    prepared, graph = prepare_for_tflite(model)
    staging = Path(tempfile.mkdtemp(prefix=f".{bundle_dir.name}.encoder-", dir=bundle_dir.parent))
    try:
        for path in bundle_dir.iterdir():  # the bundle as it is, plus the new encoder: checked before it lands
            if path.is_file():
                shutil.copy2(path, staging / path.name)
        (staging / ENCODER_FILE).write_bytes(
            convert_image_model_int8(prepared, spec.size_px, calibration[:REPRESENTATIVE_N], "encoder"))
        entry = _entry(staging / ENCODER_FILE, spec)
        manifest = dict(bundle.manifest)
        manifest["encoder"] = entry
        write_manifest(staging, manifest)
        parity = measure_parity(model, staging, parity_pictures)
        parity["forced"] = bool(force and not parity["passed"])
        lint = lint_model(staging / ENCODER_FILE)
        entry.update(macs=macs, params=int(model.count_params()), graph=graph.to_json(), training=training,
                     parity=parity, edgetpu_lint=lint)
        manifest["encoder"] = entry
        write_manifest(staging, manifest)
        if load_bundle(staging).encoder is None:
            raise UserError(f"the exported encoder does not load: {load_bundle(staging).encoder_error}")
        if not parity["passed"] and not force:
            raise UserError(f"the int8 encoder fails parity: designs from its latents reach a median "
                            f"{parity['design_psnr_db_median']:.1f} dB PSNR against the float encoder's, below "
                            f"{MIN_DESIGN_PSNR_DB:g} dB; nothing was written (--force keeps it)")
        for name in (ENCODER_FILE, "manifest.json"):  # the generator files are unchanged: only these two move
            (staging / name).chmod(0o644)
            os.replace(staging / name, bundle_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote %s into %s: %.0f KiB, %.1f MMAC, median design PSNR %.1f dB", ENCODER_FILE, bundle_dir,
             (bundle_dir / ENCODER_FILE).stat().st_size / 1024, macs / 1e6, parity["design_psnr_db_median"])
    return entry


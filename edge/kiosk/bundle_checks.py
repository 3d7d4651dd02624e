"""What a bundle must pass before it may serve on this kiosk (the hot-swap verifier's checks).

1. `edge.bundle.load_bundle`: format version, required fields, the size and sha256 of every model file;
2. its manifest's parity report: the export must have passed its own floor (int8 vs the float generator) and
   not been forced through;
3. it loads and generates: every batch model draws a fixed set of designs (right shape, finite, not flat);
4. parity within the manifest's bound on this machine: every batch model's designs against the canonical
   (smallest batch) model's, in PSNR, must reach the manifest's `min_psnr_db`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import Bundle, BundleError, load_bundle
from edge.designs import sample_prior
from edge.errors import UserError

VERIFY_N = 16  # designs each batch model draws during verification
VERIFY_SEED = 20_251_125


class ModelRejected(UserError):
    """A bundle failed verification; the message says which check and why."""


@dataclass(frozen=True)
class Verified:
    """A bundle that passed every check, with what the checks measured."""

    bundle: Bundle
    report: dict[str, Any]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else min(100.0, 10 * math.log10(255.0**2 / mse))


def verify_bundle(path: str | Path, *, num_threads: int = 2, delegate: str = "cpu") -> Verified:
    """Run every check a bundle must pass before it serves (see the module docstring).

    Raises:
        ModelRejected: naming the failed check.
    """
    from edge.designs import DesignGenerator

    path = Path(path)
    try:
        bundle = load_bundle(path)
    except BundleError as exc:
        raise ModelRejected(f"{path.name}: {exc}") from None
    parity = bundle.manifest.get("parity")
    if not isinstance(parity, dict) or "min_psnr_db" not in parity or "models" not in parity:
        raise ModelRejected(f"{path.name}: its manifest has no parity report; export it with `atelier export`")
    if not parity.get("passed") or parity.get("forced"):
        raise ModelRejected(f"{path.name}: its export did not pass parity (worst {parity.get('worst_psnr_db')} dB, "
                            f"floor {parity.get('min_psnr_db')} dB); a forced export is not hot-swapped")
    floor = float(parity["min_psnr_db"])
    z = sample_prior(VERIFY_N, bundle.z_dim, bundle.z_distribution, VERIFY_SEED)
    classes = list(np.arange(VERIFY_N) % len(bundle.class_names)) if bundle.class_names else None
    outputs: dict[int, np.ndarray] = {}
    for batch in bundle.batches:
        try:
            images = DesignGenerator(bundle, batch=batch, num_threads=num_threads, delegate=delegate).generate(
                z, classes)
        except (UserError, ValueError, RuntimeError) as exc:
            raise ModelRejected(f"{path.name}: batch-{batch} model does not run: {exc}") from None
        if images.shape != (VERIFY_N, bundle.size_px, bundle.size_px, 3) or images.dtype != np.uint8:
            raise ModelRejected(f"{path.name}: batch-{batch} model drew {images.dtype} {images.shape}")
        if float(images.std()) < 1.0:
            raise ModelRejected(f"{path.name}: batch-{batch} model draws flat pictures (std {images.std():.2f})")
        outputs[batch] = images
    canonical = min(outputs)
    measured = {str(b): round(_psnr(outputs[canonical], img), 2) for b, img in outputs.items() if b != canonical}
    worst = min(measured.values(), default=100.0)
    if worst < floor:
        raise ModelRejected(f"{path.name}: its batch models disagree on this machine ({worst:.1f} dB PSNR between "
                            f"batch sizes, below the manifest's {floor:g} dB)")
    return Verified(bundle, {"batch_psnr_db": measured, "floor_db": floor, "designs": VERIFY_N})

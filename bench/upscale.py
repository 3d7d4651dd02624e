"""Benchmark: the bundle's learned 2x upscaler (int8, `edge.upscaler`) against the C++ bilinear `upscale` kernel.

One run on this CPU, both on the same pictures:
- held-out photos (clothing-small `validation/`, the bundle's classes) shrunk to the model's size by 2x2 means:
  PSNR of the 2x enlargement to the true photo, and sharpness (mean absolute pixel difference; the photos' own for
  reference);
- the bundle's designs (what the kiosk enlarges): sharpness, and the spectrum distance at 2x size to the photos'
  (`trainer.realism.spectrum_report`: mean |dB gap| over the upper half of the radial spectrum);
- time per 128 px design (p50), ours and the kernel.

Usage: .venv/bin/python bench/upscale.py [--bundle models/default] [--data ../shared/datasets/clothing-small]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def p50_ms(fn, pictures: np.ndarray) -> float:
    for p in pictures[:3]:
        fn(p)
    times = []
    for p in pictures:
        t0 = time.perf_counter()
        fn(p)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "default")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "clothing-small")
    parser.add_argument("--designs", type=int, default=200)
    args = parser.parse_args()

    from edge.bundle import load_bundle
    from edge.designs import DesignGenerator
    from edge.kernels import upscale
    from edge.upscaler import load_upscaler
    from trainer.eval_photos import load_real
    from trainer.realism import spectrum_report
    from trainer.upscaler import area_half, psnr_db, sharpness

    bundle = load_bundle(args.bundle)
    upscaler, why = load_upscaler(bundle)
    if upscaler is None:
        print(f"{args.bundle} has no usable upscaler ({why or 'none'}): run `atelier train-upscaler` first")
        return 2
    classes = list(bundle.class_names) if bundle.class_names else \
        list((bundle.manifest.get("training") or {}).get("config", {}).get("class_names") or []) or None
    real = load_real(args.data, 2 * bundle.size_px, classes)
    photos = real.heldout
    small = np.clip(np.rint(area_half(photos)), 0, 255).astype(np.uint8)
    gen = DesignGenerator(bundle, batch=max(bundle.batches), num_threads=2)
    designs = gen.generate(gen.sample_latents(args.designs, 11))

    def bilinear(p: np.ndarray) -> np.ndarray:
        return upscale(p, 2, mode="bilinear")

    rows = []
    for name, fn in (("ours (learned, int8)", upscaler.upscale2x), ("bilinear kernel", bilinear)):
        on_photos = np.stack([fn(p) for p in small])
        on_designs = np.stack([fn(d) for d in designs])
        spectrum = spectrum_report(on_designs, photos)["spectrum_distance_db"]
        rows.append((name, psnr_db(on_photos, photos), sharpness(on_photos), sharpness(on_designs), spectrum,
                     p50_ms(fn, designs[:60])))
    print(f"{len(photos)} held-out photos, {len(designs)} designs of {args.bundle.name}, "
          f"{bundle.size_px} -> {2 * bundle.size_px} px; photos' own sharpness {sharpness(photos):.2f}")
    print("| | PSNR to the photo (dB) | sharpness, photos | sharpness, designs | spectrum distance to photos (dB) "
          "| ms per design (p50) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, psnr, s_photos, s_designs, spectrum, ms in rows:
        print(f"| {name} | {psnr:.2f} | {s_photos:.2f} | {s_designs:.2f} | {spectrum:.2f} | {ms:.2f} |")
    (_, p_o, s_o, d_o, sp_o, ms_o), (_, p_b, s_b, d_b, sp_b, ms_b) = rows
    print(f"ratios ours / bilinear: PSNR {p_o - p_b:+.2f} dB, sharpness on photos {s_o / s_b:.2f}x, on designs "
          f"{d_o / d_b:.2f}x, spectrum distance {sp_o / sp_b:.2f}x, time {ms_o / ms_b:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

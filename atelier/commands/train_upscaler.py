"""`atelier train-upscaler`: train the learned 2x upscaler on a bundle's photos and write it int8 into the bundle
(needs the [train] extra)."""

from __future__ import annotations

import argparse
import sys

NAME = "train-upscaler"
HELP = ("train a 2x upscaler (128 px design -> 256 px) on the photos and write it int8 into the bundle as "
        "upscaler_b1.tflite; the kiosk then enlarges designs with it (needs the [train] extra)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE_DIR", help="the bundle to give an upscaler (its generator is unchanged)")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="the photos: a folder with train/ (and validation/, held out for the report) class folders")
    p.add_argument("--steps", type=int, default=1500, help="training steps (default 1500)")
    p.add_argument("--batch-size", type=int, default=16, help="crops per step (default 16)")
    p.add_argument("--width", type=int, default=16, help="channels of its two hidden convs (default 16)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from trainer.upscaler import UpscalerTrainConfig
    from trainer.upscaler_export import run_train_upscaler

    cfg = UpscalerTrainConfig(steps=args.steps, batch_size=args.batch_size, width=args.width, lr=args.lr,
                              seed=args.seed)
    entry = run_train_upscaler(args.bundle, args.data, cfg, command=args._command, progress=not args.no_progress)
    versus = entry["versus_bilinear"]
    sys.stdout.write(
        f"upscaler: {args.bundle}/{entry['file']} ({entry['macs'] / 1e6:.0f} MMAC, parity median "
        f"{entry['parity']['psnr_db_median']:.1f} dB)\n"
        f"held-out photos ({versus['n_photos']}), 2x from half size: PSNR {versus['psnr_db']['ours']:.2f} dB "
        f"(bilinear {versus['psnr_db']['bilinear']:.2f}), sharpness {versus['sharpness']['ours']:.2f} "
        f"(bilinear {versus['sharpness']['bilinear']:.2f}, photos {versus['sharpness']['photos']:.2f})\n")
    return 0

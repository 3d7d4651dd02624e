"""`atelier train-encoder`: train the "Design from my garment" encoder for a generator, export it int8 into its
bundle (needs the [train] extra)."""

from __future__ import annotations

import argparse
import sys

NAME = "train-encoder"
HELP = ("train the inspire encoder (photo -> latent) for a bundle's or a run's generator and write it int8 into "
        "the bundle as encoder_b1.tflite (needs the [train] extra)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="BUNDLE_DIR|RUN_DIR",
                   help="a bundle (its float generator is rebuilt from the int8 model; the encoder lands in it) "
                        "or a run folder (its generator.keras; the float encoder is saved as encoder.keras)")
    p.add_argument("--bundle", default=None, metavar="BUNDLE_DIR",
                   help="the bundle to write the encoder into (default: SOURCE when it is a bundle; for a run "
                        "folder, a bundle exported from it)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="the generator's training photos (default: the folder its config records)")
    p.add_argument("--synthetic-steps", type=int, default=300, help="steps on generated pairs (default 300)")
    p.add_argument("--real-steps", type=int, default=200, help="steps adding real photos (default 200)")
    p.add_argument("--batch-size", type=int, default=24, help="pictures per step (default 24)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--features", default=None, metavar="DIR", help="garment feature network (default models/features)")
    p.add_argument("--force", action="store_true", help="keep an int8 encoder that fails its parity floor")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from trainer.encoder_run import run_train_encoder
    from trainer.encoder_train import EncoderTrainConfig

    cfg = EncoderTrainConfig(synthetic_steps=args.synthetic_steps, real_steps=args.real_steps,
                             batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    result = run_train_encoder(args.source, bundle_dir=args.bundle, data=args.data, cfg=cfg, command=args._command,
                               force=args.force, progress=not args.no_progress, features=args.features)
    if result.keras_path is not None:
        sys.stdout.write(f"float encoder: {result.keras_path}\n")
    if result.entry is not None:
        parity = result.entry["parity"]
        sys.stdout.write(f"encoder: {result.bundle_dir}/{result.entry['file']} ({result.entry['macs'] / 1e6:.0f} MMAC, "
                         f"parity: median design PSNR {parity['design_psnr_db_median']:.1f} dB, "
                         f"latent cosine {parity['latent_cosine_mean']:.3f})\n")
    return 0

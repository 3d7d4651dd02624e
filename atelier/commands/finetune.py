"""`atelier finetune`: fine-tune a trained run on kiosk captures (FreezeD + DiffAugment), evaluate, export."""

from __future__ import annotations

import argparse
import sys

NAME = "finetune"
HELP = ("fine-tune a run on a capture store (or its .tar): frozen lower D blocks, DiffAugment, before/after "
        "evaluation, a new bundle (needs the [train] extra)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="from_run", required=True, metavar="RUN_DIR|BUNDLE",
                   help="the trained run folder, or a bundle shipped with float weights (e.g. models/default)")
    p.add_argument("--captures", required=True, metavar="STORE|TAR",
                   help="a capture store folder or a .tar made by `atelier capture export`")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="the new run folder to write")
    p.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    p.add_argument("--mix-original", action="store_true",
                   help="also train on the run's original data (captures repeated to --capture-share)")
    p.add_argument("--original-data", default=None, metavar="DIR",
                   help="the original data when it is no longer where config.json says")
    p.add_argument("--capture-share", type=float, default=0.5,
                   help="with --mix-original: the share of captures in the training mix (default 0.5)")
    p.add_argument("--train-d-blocks", type=int, default=2,
                   help="discriminator conv blocks that keep training; the lower ones are frozen (default 2)")
    p.add_argument("--classes", default=None, help="comma-separated capture classes to use (default all)")
    p.add_argument("--batch-size", type=int, default=None, help="images per step (default: the run's)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the run's seed + 1)")
    p.add_argument("--eval-n", type=int, default=64, help="designs per class in the before/after evaluation")
    p.add_argument("--features", default=None, metavar="DIR", help="garment feature network for the evaluation")
    p.add_argument("--bundle-out", default=None, metavar="DIR",
                   help="where the new bundle goes (default: beside --out, named <OUT>-<format>); give a folder "
                        "inside the kiosk's models folder to hot-swap it")
    p.add_argument("--format", dest="fmt", default="int8", choices=["int8", "fp16", "fp32"], help="bundle format")
    p.add_argument("--no-export", action="store_true", help="fine-tune and evaluate only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from trainer.finetune import FinetuneOptions, finetune

    options = FinetuneOptions(
        steps=args.steps, mix_original=args.mix_original, original_data=args.original_data,
        capture_share=args.capture_share, train_d_blocks=args.train_d_blocks,
        classes=[c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None,
        batch_size=args.batch_size, seed=args.seed, eval_n=args.eval_n, features_dir=args.features,
        export=not args.no_export, bundle_out=args.bundle_out, fmt=args.fmt, progress=not args.no_progress,
        command=args._command,
    )
    result = finetune(args.from_run, args.captures, args.out, options)
    sys.stdout.write(f"fine-tuned run: {result.run_dir}\n")
    for name, after in result.report["evaluation"]["after"].items():
        before = result.report["evaluation"]["before"].get(name, {})
        if "kid" in after:
            fcd = (f", FCD {before['fcd']['value']:.2f} -> {after['fcd']['value']:.2f}"
                   if after.get("fcd") and before.get("fcd") else "")
            sys.stdout.write(f"  {name}: KID {before['kid']['value']:.4f} -> {after['kid']['value']:.4f}{fcd} "
                             f"({result.report['evaluation']['feature_space']})\n")
    if result.bundle_dir is not None:
        sys.stdout.write(f"bundle: {result.bundle_dir}\n")
    return 0

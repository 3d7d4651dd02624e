"""`atelier evaluate`: FCD, KID, precision/recall and a data-copying check of a run or a bundle."""

from __future__ import annotations

import argparse

NAME = "evaluate"
HELP = ("measure a run folder or a bundle against real photos: FCD, KID, precision/recall, class accuracy, "
        "novelty (needs the [train] extra)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="RUN_DIR|BUNDLE", help="a run folder (config.json) or a bundle (manifest.json)")
    p.add_argument("--data", required=True,
                   help="real photos: a dataset root with train/ and validation/ (clothing-small), or class "
                        "folders (then a fixed-seed 20%% per class is held out)")
    p.add_argument("--n", type=int, default=1000, help="designs to generate (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="latent seed (same seed as `atelier generate --seed`)")
    p.add_argument("--classes", default=None,
                   help="comma-separated classes to compare against (default: the model's classes)")
    p.add_argument("--out", default=None,
                   help="folder for evaluation.json and closest-pairs.png (default: RUN_DIR/evaluation, or "
                        "BUNDLE-evaluation beside the bundle)")
    p.add_argument("--features", default=None,
                   help="feature-network folder (default: the shipped models/features or $ATELIER_FEATURES)")
    p.add_argument("--snapshot", default=None, metavar="EPOCH",
                   help="evaluate a kept epoch of a run (snapshots/epoch-NNNN) instead of generator.keras")
    p.add_argument("--record", nargs="?", const="", default=None, metavar="BUNDLE",
                   help="write the numbers into a bundle's manifest: a bundle's own under its quantization "
                        "(--record), a run's float generator under 'float' (--record BUNDLE exported from it)")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from edge.errors import UserError
    from trainer.evaluate import EvalOptions, evaluate, format_table
    from trainer.manifest_metrics import check_target, record

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    options = EvalOptions(n=args.n, seed=args.seed, classes=classes, features_dir=args.features)
    if args.record == "" and not (Path(args.model) / "manifest.json").is_file():
        raise UserError("--record without a bundle records a bundle's own numbers; to record a run's float "
                        "numbers, name the bundle exported from it: --record BUNDLE")
    record_in = None if args.record is None else Path(args.record or args.model)
    if record_in is not None:
        check_target(record_in)
    result = evaluate(args.model, args.data, options, out_dir=args.out, snapshot=args.snapshot)
    sys.stdout.write(format_table(result) + "\n")
    if record_in is not None:
        key, model_id = record(record_in, result, args._command)
        sys.stdout.write(f"recorded as evaluation.{key} in {record_in / 'manifest.json'} (model ID now {model_id})\n")
    return 0

"""`atelier evaluate`: FCD, KID, precision/recall and a data-copying check of a run or a bundle."""

from __future__ import annotations

import argparse

NAME = "evaluate"
HELP = ("measure a run folder or a bundle against real photos: FCD, KID, precision/recall, class accuracy, "
        "novelty (needs the [train] extra)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="RUN_DIR|BUNDLE", nargs="?", default=None,
                   help="a run folder (config.json) or a bundle (manifest.json); or use --designs")
    p.add_argument("--designs", default=None, metavar="DIR|NPZ",
                   help="score these images instead of a model's designs: a folder of PNG/JPEG/WebP files or a "
                        ".npz with a uint8 N x H x W x 3 array (e.g. from `atelier generate --out X.npz`)")
    p.add_argument("--size", type=int, default=None,
                   help="with --designs: the side to evaluate at (default: the images' most common side)")
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
    p.add_argument("--features-128", default=None,
                   help="the 128 px feature network's folder (default: the shipped models/features-128)")
    p.add_argument("--snapshot", default=None, metavar="EPOCH",
                   help="evaluate a kept epoch of a run (snapshots/epoch-NNNN) instead of generator.keras")
    p.add_argument("--check-instrument", action="store_true",
                   help="prove the yardstick instead: score real t-shirt photos, blocky and gridded copies of them, "
                        "models/default's designs and the seed preset after 30 minutes "
                        "(models/reference/seed-30min-designs.npz), and print whether each number ranks them as a "
                        "person would")
    p.add_argument("--record", nargs="?", const="", default=None, metavar="BUNDLE",
                   help="write the numbers into a bundle's manifest: a bundle's own under its quantization "
                        "(--record), a run's float generator under 'float' (--record BUNDLE exported from it)")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from edge.errors import UserError
    from trainer.evaluate import EvalOptions, evaluate, format_table
    from trainer.manifest_records import check_target, record

    if args.check_instrument:
        return _check_instrument(args)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    options = EvalOptions(n=args.n, seed=args.seed, classes=classes, features_dir=args.features,
                          features_128_dir=args.features_128)
    if args.model is None and args.designs is None:
        raise UserError("name a run folder or a bundle to evaluate, or give --designs DIR|NPZ")
    if args.designs is not None and args.record is not None:
        raise UserError("--record writes a bundle's numbers; images given with --designs have no bundle")
    if args.size is not None and args.designs is None:
        raise UserError("--size applies to --designs; a model's designs are evaluated at the model's size")
    if args.record == "" and not (Path(args.model) / "manifest.json").is_file():
        raise UserError("--record without a bundle records a bundle's own numbers; to record a run's float "
                        "numbers, name the bundle exported from it: --record BUNDLE")
    record_in = None if args.record is None else Path(args.record or args.model)
    if record_in is not None:
        check_target(record_in)
    result = evaluate(args.model, args.data, options, out_dir=args.out, snapshot=args.snapshot,
                      designs_path=args.designs, size_px=args.size)
    sys.stdout.write(format_table(result) + "\n")
    if record_in is not None:
        key, model_id = record(record_in, result, args._command)
        sys.stdout.write(f"recorded as evaluation.{key} in {record_in / 'manifest.json'} (model ID now {model_id})\n")
    return 0


REFERENCE_DEFAULT = "default-2026-11-25-designs.npz"  # set (d): the t-shirt default the realism issue was filed about


def _check_instrument(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from edge.errors import UserError
    from trainer.instrument_check import format_check, run_check

    if args.model is not None or args.designs is not None or args.record is not None:
        raise UserError("--check-instrument scores its own five sets; give only --data (and --out for the JSON)")
    models = Path(__file__).resolve().parents[2] / "models"
    reference = models / "reference"
    check = run_check(args.data, reference / REFERENCE_DEFAULT, reference / "seed-30min-designs.npz",
                      features_dir=args.features, features_128_dir=args.features_128, seed=args.seed)
    sys.stdout.write(format_check(check) + "\n")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "instrument-check.json").write_text(json.dumps({n: check.headline(n) for n in check.results},
                                                              indent=2) + "\n")
    return 0

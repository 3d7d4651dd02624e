"""`atelier evaluate-encoder`: how well a bundle's inspire encoder designs from held-out photos (needs [train])."""

from __future__ import annotations

import argparse
import sys

NAME = "evaluate-encoder"
HELP = ("measure a bundle's inspire encoder on held-out photos: feature distance photo -> reconstruction against "
        "random designs, colour error, class agreement, and a picture (needs the [train] extra)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE_DIR", help="a bundle with encoder_b1.tflite (atelier train-encoder)")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="the dataset: held-out photos are DIR/validation (or a fixed 20 %% of each class)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where evaluation.json and inspire.jpg go (default BUNDLE_DIR-inspire-evaluation)")
    p.add_argument("--n-random", type=int, default=1000, help="random designs to compare with (default 1000)")
    p.add_argument("--features", default=None, metavar="DIR", help="garment feature network (default models/features)")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from PIL import Image

    from edge.errors import UserError
    from trainer.encoder_eval import evaluate_encoder, format_report

    if args.n_random < 2:
        raise UserError("--n-random must be at least 2")
    report, picture = evaluate_encoder(args.bundle, args.data, features=args.features, n_random=args.n_random)
    report["command"] = args._command
    out = Path(args.out) if args.out else Path(f"{Path(args.bundle).resolve()}-inspire-evaluation")
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    Image.fromarray(picture).save(out / "inspire.jpg", quality=90)
    sys.stdout.write(format_report(report) + f"\nwrote {out}/evaluation.json and {out}/inspire.jpg\n")
    return 0

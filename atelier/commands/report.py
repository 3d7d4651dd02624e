"""`atelier report`: the epoch table (image size, noise, batch, img/s, wall time, FCD, KID, P/R, samples)."""

from __future__ import annotations

import argparse

NAME = "report"
HELP = ("write a run's epoch table — speed, FCD, KID, precision/recall and sample grids of the kept epochs — "
        "as Markdown and HTML (needs the [train] extra)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder made by `atelier train`")
    p.add_argument("--data", default=None,
                   help="real photos to measure against (default: the run's training data folder; a dataset "
                        "root with train/ and validation/ gives the real-vs-real floor from validation/)")
    p.add_argument("--n", type=int, default=500, help="designs per epoch (default 500)")
    p.add_argument("--seed", type=int, default=0, help="latent seed (the same latents for every epoch)")
    p.add_argument("--epochs", default=None,
                   help="comma-separated epochs to include (default: every kept snapshot)")
    p.add_argument("--out", default=None, help="report folder (default RUN_DIR/report)")
    p.add_argument("--features", default=None,
                   help="feature-network folder (default: the shipped models/features or $ATELIER_FEATURES)")


def run(args: argparse.Namespace) -> int:
    import sys

    from edge.errors import UserError
    from trainer.report import write_report

    epochs = None
    if args.epochs:
        try:
            epochs = [int(e) for e in args.epochs.split(",") if e.strip()]
        except ValueError as exc:
            raise UserError(f"--epochs takes comma-separated integers, e.g. 1,10,50; got {args.epochs!r}") from exc
    paths = write_report(args.run_dir, data_dir=args.data, n=args.n, seed=args.seed, epochs=epochs,
                         out_dir=args.out, features_dir=args.features)
    sys.stdout.write(f"report: {paths['markdown']} and {paths['html']}\n")
    return 0

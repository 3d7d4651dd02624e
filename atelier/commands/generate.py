"""`atelier generate`: draw designs from a model bundle (runs on the kiosk runtime, no TensorFlow)."""

from __future__ import annotations

import argparse

NAME = "generate"
HELP = "generate designs from a model bundle: PNGs, one grid PNG, or a .npz"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle_dir", metavar="BUNDLE_DIR", help="bundle folder made by `atelier export`")
    p.add_argument("--n", type=int, required=True, help="how many designs")
    p.add_argument(
        "--out",
        required=True,
        metavar="OUT",
        help="a folder for PNGs, a .png with --grid, or a .npz (uint8 N x H x W x 3 'images')",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="latent seed: the same seed gives the same designs (default: a random seed, logged)",
    )
    p.add_argument(
        "--class",
        dest="class_name",
        default=None,
        metavar="NAME",
        help="class to draw (conditional bundles; default: go round the classes)",
    )
    p.add_argument("--grid", action="store_true", help="write one grid picture to OUT (.png)")
    p.add_argument("--batch", type=int, default=None, help="which of the bundle's batch sizes to run")
    p.add_argument("--threads", type=int, default=2, help="interpreter CPU threads (default 2)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")


def run(args: argparse.Namespace) -> int:
    import logging
    import secrets

    from edge.designs import generate_to

    seed = args.seed
    if seed is None:
        seed = secrets.randbelow(2**31)
        logging.getLogger("atelier").info("seed %d (pass --seed %d to draw these designs again)", seed, seed)
    generate_to(
        args.bundle_dir,
        n=args.n,
        out=args.out,
        seed=seed,
        class_name=args.class_name,
        as_grid=args.grid,
        batch=args.batch,
        num_threads=args.threads,
        overwrite=args.overwrite,
    )
    return 0

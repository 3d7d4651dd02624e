"""`atelier features train`: (re)train the garment feature network that `evaluate` and `report` measure with."""

from __future__ import annotations

import argparse
import sys

NAME = "features"
HELP = "train the garment feature network used by `evaluate` and `report` (needs the [train] extra)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="features_action", metavar="ACTION", required=True)
    train = sub.add_parser("train", help="train the classifier on DATA/train, measure it on DATA/validation",
                           description="Train the garment classifier whose pooled features are Atelier's feature "
                                       "space; writes garment_features.keras and card.json to --out.")
    train.add_argument("--data", required=True,
                       help="dataset root with train/ and validation/ class folders (clothing-small)")
    train.add_argument("--out", required=True, help="folder for the network and its card (e.g. models/features)")
    train.add_argument("--epochs", type=int, default=None, help="passes over the training split (default 18)")
    train.add_argument("--batch-size", type=int, default=None, help="pictures per step (default 64)")
    train.add_argument("--size", type=int, default=64, choices=[64, 128],
                       help="side the network reads: 64 (models/features) or 128 (models/features-128, sees "
                            "the model's own pixels)")
    train.add_argument("--seed", type=int, default=0, help="random seed")
    train.add_argument("--no-progress", action="store_true", help="one log line per epoch, no progress bar")


def run(args: argparse.Namespace) -> int:
    from trainer.features import FeatureTrainConfig, train_feature_net

    cfg = FeatureTrainConfig(seed=args.seed, size_px=args.size)
    if args.epochs is not None:
        cfg.epochs = args.epochs
    if args.batch_size is not None:
        cfg.batch_size = args.batch_size
    card = train_feature_net(args.data, args.out, cfg, command=args._command,
                             progress=not args.no_progress)
    sys.stdout.write(f"feature network: validation accuracy {card['val_accuracy']:.3f} "
                     f"({card['data']['n_validation']} pictures) -> {args.out}\n")
    return 0

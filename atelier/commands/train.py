"""`atelier train`: train a DCGAN on a folder of garment photos."""

from __future__ import annotations

import argparse
import sys

NAME = "train"
HELP = "train a garment GAN on a folder of photos (needs the [train] extra: TensorFlow)"


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=False, help="folder of class subfolders (train/<class>/*.jpg) or of images")
    p.add_argument("--out", required=True, help="run folder to create (or to continue with --resume)")
    p.add_argument("--preset", default="edge", choices=["seed", "edge", "edge2", "tiny"],
                   help="architecture (default edge; edge2 = the realism recipe: bilinear upsampling, hinge loss, "
                        "skip-layer excitation, wider high-resolution blocks)")
    p.add_argument("--size", type=int, default=None, help="image size in px: 64 or 128 (32 for tiny)")
    p.add_argument("--epochs", type=int, default=None, help="epochs to train (default: preset's)")
    p.add_argument("--batch-size", type=int, default=None, help="images per step (default: preset's)")
    p.add_argument("--classes", default=None, help="comma-separated class subfolders to use, e.g. t-shirt,dress")
    p.add_argument("--conditional", action="store_true", help="class-conditional G and projection D")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same run)")
    p.add_argument("--crop", choices=["center", "pad"], default="center", help="square the photos by crop or pad")
    p.add_argument("--steps-per-checkpoint", type=int, default=None, help="checkpoint every N steps")
    p.add_argument("--keep-epochs", type=_int_list, default=None,
                   help="epochs whose generator is snapshotted for `atelier report` (default 1,10,50,100)")
    p.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                   help="stop when the run's wall time reaches this many minutes (mid-epoch if need be; "
                        "checkpointed, so --resume with a larger budget goes on)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="settings",
                   help="override one setting of the preset (repeatable; VALUE is JSON), e.g. --set upsample=bilinear "
                        "--set loss=hinge --set skip_excitation=true --set 'g_channels={\"64\": 48, \"128\": 24}' "
                        "(partial widths merge into the preset's)")
    p.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                   help="split the CPU into N logical devices and train mirrored over them: the code path of an "
                        "N-GPU box, for CI (several machines: set TF_CONFIG on each, see docs/training.md)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edge.errors import UserError
    from trainer.config import parse_setting, preset
    from trainer.train import train

    if not args.resume and not args.data:
        raise UserError("--data is required (a folder of images or class subfolders)")
    overrides = {
        "size_px": args.size,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "crop": args.crop,
        "conditional": args.conditional or None,
        "class_names": [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None,
        "steps_per_checkpoint": args.steps_per_checkpoint,
        "keep_epochs": args.keep_epochs,
        "data_dir": str(Path(args.data).resolve()) if args.data else None,
    }
    for text in args.settings:
        name, value = parse_setting(text)
        if name in overrides and overrides[name] is not None:
            raise UserError(f"--set {name} repeats a setting that has its own flag; use the flag")
        overrides[name] = value
    if args.resume and args.settings:
        raise UserError("--set changes a new run's settings; a resumed run keeps its config.json")
    if args.resume:
        # The run's own config.json decides everything but a larger --epochs.
        from trainer.config import TrainConfig

        cfg = TrainConfig(epochs=args.epochs or 0, data_dir=overrides["data_dir"] or "")
    else:
        cfg = preset(args.preset, **overrides)
    if args.time_budget is not None and not args.time_budget > 0:
        raise UserError(f"--time-budget must be a positive number of minutes, got {args.time_budget}")
    result = train(cfg, args.out, resume=args.resume, command=args._command,
                   progress=not args.no_progress, cpu_devices=args.cpu_devices,
                   time_budget_s=args.time_budget * 60 if args.time_budget is not None else None)
    if not result.is_chief:
        sys.stdout.write(f"worker done: trained {result.steps} steps; the chief (worker 0) holds the run folder\n")
        return 0
    stopped = " (time budget used up)" if result.out_of_time else ""
    sys.stdout.write(f"trained {result.steps} steps ({result.epochs_done} epochs) at {result.img_per_s:.1f} "
                     f"img/s in {result.wall_s:.0f} s{stopped} -> {result.run_dir}\n")
    return 0

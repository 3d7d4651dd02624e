"""`atelier export`: quantize a run's generator into a TFLite model bundle for the kiosk."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "export a run's generator as a TFLite model bundle (int8 by default; needs the [train] extra)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder made by `atelier train`")
    p.add_argument("--out", required=True, metavar="BUNDLE_DIR", help="bundle folder to write")
    p.add_argument(
        "--format",
        dest="fmt",
        default="int8",
        choices=["int8", "fp16", "fp32"],
        help="int8: full-integer (default, CPU and Edge TPU); fp16: GPU delegates; fp32: comparison",
    )
    p.add_argument(
        "--batch", default="1,8", metavar="1,8", help="batch sizes, one static-shape model each (default 1,8)"
    )
    p.add_argument(
        "--min-psnr",
        type=float,
        default=None,
        metavar="DB",
        help="parity floor against the float generator (default: 20 dB int8, 40 dB fp16/fp32)",
    )
    p.add_argument("--force", action="store_true", help="keep the bundle even if it fails the parity floor")
    p.add_argument("--name", default=None, help="bundle name (default: <run folder>-<format>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle in BUNDLE_DIR")
    p.add_argument(
        "--no-edgetpu-compiler", action="store_true", help="skip edgetpu_compiler even when it is on PATH"
    )
    p.add_argument(
        "--float-weights",
        default=None,
        metavar="DIR",
        help="also write the run's float G, EMA G and D (no optimizer state) to DIR, named in the manifest, so "
        "`atelier finetune --from BUNDLE_DIR` works without the run folder",
    )


def _command_line(args: argparse.Namespace) -> list[str]:
    """The export command as parsed, for the manifest (sys.argv is not ours when called as a library)."""
    command = [
        "atelier",
        "export",
        args.run_dir,
        "--out",
        args.out,
        "--format",
        args.fmt,
        "--batch",
        args.batch,
    ]
    if args.min_psnr is not None:
        command += ["--min-psnr", f"{args.min_psnr:g}"]
    if args.name is not None:
        command += ["--name", args.name]
    if args.float_weights is not None:
        command += ["--float-weights", args.float_weights]
    flags = [
        ("--force", args.force),
        ("--overwrite", args.overwrite),
        ("--no-edgetpu-compiler", args.no_edgetpu_compiler),
    ]
    return command + [flag for flag, on in flags if on]


def run(args: argparse.Namespace) -> int:
    import logging

    from trainer.export import ExportOptions, export_bundle, parse_batches

    options = ExportOptions(
        fmt=args.fmt,
        batches=parse_batches(args.batch),
        force=args.force,
        min_psnr_db=args.min_psnr,
        name=args.name,
        overwrite=args.overwrite,
        command=_command_line(args),
        edgetpu_compiler=not args.no_edgetpu_compiler,
    )
    if args.float_weights is not None:  # refused before the bundle is written
        from trainer.float_weights import check_float_weights_target

        checked = check_float_weights_target(args.run_dir, args.float_weights)
    result = export_bundle(args.run_dir, args.out, options)
    if args.float_weights is not None:
        from trainer.float_weights import attach_float_weights

        attach_float_weights(args.run_dir, result.bundle_dir, args.float_weights, options.command, ckpt=checked)
    parity = result.parity
    status = "passed" if parity["passed"] else "FAILED (kept with --force)"
    logging.getLogger("atelier").info(
        "wrote %s: parity %s, worst %.1f dB PSNR (floor %g dB)",
        result.bundle_dir,
        status,
        parity["worst_psnr_db"],
        parity["min_psnr_db"],
    )
    return 0

"""The `atelier` command: parses arguments and calls library functions, nothing more."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from atelier.commands import COMMAND_MODULES
from edge.errors import UserError
from edge.version import __version__

log = logging.getLogger("atelier")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atelier",
        description="Offline fashion-design generator: train, export, evaluate, and run the kiosk.",
    )
    parser.add_argument("--version", action="version", version=f"atelier {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"atelier.commands.{name}")
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # TensorFlow's C++ logging is noisy; keep warnings and errors only unless asked.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose else "2")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The command line as given, for the records runs and manifests keep (sys.argv is pytest's in tests).
    args._command = ["atelier", *(sys.argv[1:] if argv is None else argv)]
    setup_logging(args.verbose)
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

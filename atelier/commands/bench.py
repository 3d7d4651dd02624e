"""`atelier bench`: run the benchmarks in the checkout's bench/ folder (each prints ours beside the alternative)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "bench"
HELP = "run benchmarks from bench/ in a source checkout: ours beside the alternative, with the ratio"

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def available(bench_dir: Path = BENCH_DIR) -> dict[str, Path]:
    """Benchmark name -> script, for every bench/*.py."""
    if not bench_dir.is_dir():
        return {}
    return {p.stem: p for p in sorted(bench_dir.glob("*.py")) if not p.name.startswith("_")}


def _first_line(script: Path) -> str:
    import ast

    doc = ast.get_docstring(ast.parse(script.read_text())) or ""
    return doc.splitlines()[0] if doc else ""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="benchmarks to run (default: all; --list names them); after `--`, arguments for one "
                        "benchmark, e.g. `atelier bench kiosk -- --seconds 3`")
    p.add_argument("--list", action="store_true", help="list the benchmarks and what each measures")


def run(args: argparse.Namespace) -> int:
    import subprocess
    import sys

    from edge.errors import UserError

    scripts = available()
    if not scripts:
        raise UserError(f"no benchmarks at {BENCH_DIR}: `atelier bench` runs the bench/ scripts of a source "
                        "checkout (git clone the project; an installed package has none)")
    if args.list:
        for name, script in scripts.items():
            sys.stdout.write(f"{name:<18} {_first_line(script)}\n")
        return 0
    # argparse hands everything after `--` over as more NAMEs: the first one that looks like an option starts them.
    cut = next((i for i, a in enumerate(args.names) if a.startswith("-")), len(args.names))
    args.names, extra = args.names[:cut], args.names[cut:]
    unknown = [n for n in args.names if n not in scripts]
    if unknown:
        raise UserError(f"unknown benchmark {', '.join(unknown)}; there are: {', '.join(scripts)}")
    names = args.names or list(scripts)
    if extra and len(names) != 1:
        raise UserError("arguments after -- go to one benchmark: name exactly one")
    for name in names:
        sys.stdout.write(f"== {name}\n")
        sys.stdout.flush()
        code = subprocess.call([sys.executable, str(scripts[name]), *extra])
        if code != 0:
            raise UserError(f"benchmark {name} failed (exit status {code})")
    return 0

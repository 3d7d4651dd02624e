"""Every `atelier ...` command the README and docs/ show is a real one, held to the CLI's own argparse parser.

A command line in a ```sh block must parse completely (command, action, every flag and its value). An inline
mention such as `atelier train --keep-epochs` is a fragment: its command, action and flags must exist.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from atelier.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "bench" / "RESULTS.md"]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"(?<!`)`(atelier [^`]+)`(?!`)")
# `atelier` as a command word: at the start, or after a space, an operator or an opening quote
# (`taskset -c 0 atelier ...`, `TF_CONFIG=... atelier ...`, `srun bash -c '... atelier ...'`).
COMMAND = re.compile(r"(?:^|[\s;&|(])['\"]?atelier\s+(\S.*)$")


def shell_lines(block: str) -> list[str]:
    """Join backslash continuations; one string per shell line."""
    return block.replace("\\\n", " ").splitlines()


def atelier_argv(line: str) -> list[str] | None:
    """The arguments after `atelier` on a shell line, or None when the line runs something else."""
    found = COMMAND.search(line)
    if found is None or line.lstrip().startswith("#"):
        return None
    rest = found.group(1)
    try:
        words = shlex.split(rest, comments=True)
    except ValueError:  # the command closes a quote opened before it (`bash -c '... atelier train ...'`)
        words = shlex.split(rest.rstrip().rstrip("'\""), comments=True)
    if words and words[-1] == "&":
        words.pop()
    return words


def documented_commands() -> tuple[list[tuple[str, list[str]]], list[tuple[str, list[str]]]]:
    full: list[tuple[str, list[str]]] = []
    fragments: list[tuple[str, list[str]]] = []
    for doc in DOCS:
        text = doc.read_text()
        where = doc.relative_to(REPO).as_posix()
        for lang, block in FENCE.findall(text):
            if lang not in ("sh", "bash", ""):
                continue
            for line in shell_lines(block):
                argv = atelier_argv(line)
                if argv is not None:
                    full.append((where, argv))
        for span in INLINE.findall(FENCE.sub("", text)):
            fragments.append((where, shlex.split(span)[1:]))
    return full, fragments


FULL, FRAGMENTS = documented_commands()


def parse_errors(argv: list[str]) -> str:
    """What the real parser says about argv ('' when it parses)."""
    parser = build_parser()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            return err.getvalue() or f"exit {exc.code}"
    return ""


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def fragment_errors(argv: list[str]) -> list[str]:
    """The command, actions and flags of a fragment that the parser does not know."""
    parser = build_parser()
    problems: list[str] = []
    for word in argv:
        choices = subparsers(parser)
        if word in choices:
            parser = choices[word]
        elif word.startswith("-") and word != "--":
            flag = word.split("=", 1)[0]
            if flag not in parser._option_string_actions:
                problems.append(f"{parser.prog} has no {flag}")
        elif choices:
            problems.append(f"{parser.prog} has no command {word!r}")
            break
        elif word == "--":
            break
    return problems


def test_the_docs_show_commands() -> None:
    """The collector finds what it should (a broken regex would make the tests below vacuous)."""
    shown = {argv[0] for _, argv in FULL if argv}
    assert {"train", "evaluate", "report", "export", "generate", "kiosk", "capture", "finetune"} <= shown
    assert len(FULL) >= 40 and len(FRAGMENTS) >= 10
    assert parse_errors(["train", "--no-such-flag"]) and fragment_errors(["capture", "explode"])


@pytest.mark.parametrize(("where", "argv"), FULL, ids=[f"{w}:{' '.join(a)[:60]}" for w, a in FULL])
def test_every_command_line_in_the_docs_parses(where: str, argv: list[str]) -> None:
    errors = parse_errors(argv)
    assert not errors, f"{where}: `atelier {' '.join(argv)}` does not parse:\n{errors}"


@pytest.mark.parametrize(("where", "argv"), FRAGMENTS, ids=[f"{w}:{' '.join(a)[:60]}" for w, a in FRAGMENTS])
def test_every_inline_command_in_the_docs_names_real_flags(where: str, argv: list[str]) -> None:
    problems = fragment_errors(argv)
    assert not problems, f"{where}: `atelier {' '.join(argv)}`: {'; '.join(problems)}"

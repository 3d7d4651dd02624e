"""Run the real `atelier` command line in-process and hold it to the user-error contract."""

from __future__ import annotations

import logging

import pytest

from atelier.cli import main


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
            ) -> tuple[int, str, str]:
    """`atelier ARGV` -> (exit status, stdout, the error it logged); never a traceback, on any stream."""
    caplog.clear()
    with caplog.at_level(logging.INFO):
        rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    errors = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    everything = out + err + caplog.text
    assert "Traceback" not in everything, everything
    return rc, out, errors


def assert_user_error(argv: list[str], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
                      *expected: str) -> str:
    """`atelier ARGV` exits 2 with one error line holding every `expected` text; returns that line."""
    rc, out, errors = run_cli(argv, capsys, caplog)
    assert rc == 2, f"exit {rc}; out: {out}; errors: {errors}"
    for text in expected:
        assert text in errors, f"{text!r} not in the error: {errors}"
    return errors

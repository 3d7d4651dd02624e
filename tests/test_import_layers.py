"""Imports run downhill: edge <- trainer <- atelier (the CLI). Nothing below the CLI imports it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imported_top_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(("package", "forbidden"), [("edge", {"atelier", "trainer"}), ("trainer", {"atelier"})])
def test_no_import_runs_back_up(package: str, forbidden: set[str]) -> None:
    offenders = {}
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules found under {package}/"
    for path in files:
        bad = _imported_top_packages(path) & forbidden
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}, f"{package}/ must not import {sorted(forbidden)}: {offenders}"


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from atelier.cli import main\n    import trainer.gan\n")
    assert _imported_top_packages(module) == {"atelier", "trainer"}

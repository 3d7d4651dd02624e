"""Fixtures: int8 model bundles exported from the tiny runs by the real exporter (session-scoped)."""

import shutil
from pathlib import Path

import pytest


def export_int8(run_dir: Path, out: Path, batches: tuple[int, ...] = (1, 8)) -> Path:
    """Export `run_dir` as an int8 bundle at `out` with the default parity floor."""
    from trainer.export import ExportOptions, export_bundle

    export_bundle(run_dir, out, ExportOptions(fmt="int8", batches=batches, command=["pytest-fixture"]))
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Path:
    """An int8 bundle (batch 1 and 8) of the unconditional tiny run."""
    return export_int8(tiny_run, tmp_path_factory.mktemp("bundles") / "tiny-int8")


@pytest.fixture(scope="session")
def tiny_conditional_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_conditional_run: Path) -> Path:
    """An int8 bundle (batch 1 and 8) of the class-conditional tiny run."""
    return export_int8(tiny_conditional_run, tmp_path_factory.mktemp("bundles") / "tiny-cond-int8")


def models_and_stick(root: Path, start: Path, on_stick: Path, stick_name: str) -> tuple[Path, Path, Path]:
    """A kiosk's models folder holding `start`, and a mounted USB stick (under root/media) holding `on_stick`.

    Returns:
        (models_dir, the start bundle's folder in it, the stick's folder); pass usb_roots=root/"media".
    """
    models = root / "models"
    models.mkdir()
    first = Path(shutil.copytree(start, models / start.name))
    stick = root / "media" / "STICK"
    stick.mkdir(parents=True)
    shutil.copytree(on_stick, stick / stick_name)
    return models, first, stick

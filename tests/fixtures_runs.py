"""Fixtures: small trained runs made by the real trainer (session-scoped: trained once per test session)."""

from pathlib import Path

import pytest


def _train_tiny(out: Path, data: Path, **overrides) -> Path:
    from trainer.config import preset
    from trainer.train import train

    cfg = preset("tiny", **{"size_px": 32, "epochs": 2, "data_dir": str(data), "seed": 3, **overrides})
    train(cfg, out, command=["pytest-fixture"], progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, garment_dir: Path) -> Path:
    """A 2-epoch unconditional `tiny` run (32 px) on the synthetic garments."""
    return _train_tiny(tmp_path_factory.mktemp("runs") / "tiny", garment_dir)


@pytest.fixture(scope="session")
def tiny_conditional_run(tmp_path_factory: pytest.TempPathFactory, garment_dir: Path) -> Path:
    """A 2-epoch class-conditional `tiny` run (32 px, classes dress, t-shirt, trousers)."""
    return _train_tiny(tmp_path_factory.mktemp("runs") / "tiny-cond", garment_dir, conditional=True)

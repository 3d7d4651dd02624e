"""Fixtures: synthetic garment datasets made by the project's procedural generator."""

from pathlib import Path

import pytest

from edge.procedural_garments import write_dataset


@pytest.fixture(scope="session")
def garment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-class synthetic dataset (t-shirt, dress, trousers), 24 pictures each, 48 px PNGs."""
    return write_dataset(tmp_path_factory.mktemp("garments"), n_per_class=24, size_px=48, seed=7)

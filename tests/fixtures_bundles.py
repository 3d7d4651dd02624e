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


def add_encoder(bundle: Path, out: Path, data: Path) -> Path:
    """A copy of `bundle` with a briefly trained inspire encoder (the real `atelier train-encoder` path)."""
    from trainer.encoder_run import run_train_encoder
    from trainer.encoder_train import EncoderTrainConfig

    shutil.copytree(bundle, out)
    cfg = EncoderTrainConfig(synthetic_steps=40, real_steps=20, batch_size=8)
    run_train_encoder(out, data=data, cfg=cfg, command=["pytest-fixture"], progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_inspire_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path, garment_dir: Path) -> Path:
    """The unconditional tiny bundle with an inspire encoder (encoder_b1.tflite)."""
    return add_encoder(tiny_bundle, tmp_path_factory.mktemp("bundles") / "tiny-inspire", garment_dir)


@pytest.fixture(scope="session")
def tiny_conditional_inspire_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_conditional_bundle: Path,
                                    garment_dir: Path) -> Path:
    """The class-conditional tiny bundle with an inspire encoder (z and class logits)."""
    return add_encoder(tiny_conditional_bundle, tmp_path_factory.mktemp("bundles") / "tiny-cond-inspire",
                       garment_dir)


@pytest.fixture(scope="session")
def tiny_upscaler_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path, garment_dir: Path) -> Path:
    """A copy of the tiny bundle with a briefly trained 2x upscaler (the real `atelier train-upscaler` path)."""
    from trainer.upscaler import UpscalerTrainConfig
    from trainer.upscaler_export import run_train_upscaler

    out = Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("bundles") / "tiny-upscaler"))
    run_train_upscaler(out, garment_dir, UpscalerTrainConfig(steps=40, batch_size=8, crop_px=32),
                       command=["pytest-fixture"], progress=False)
    return out

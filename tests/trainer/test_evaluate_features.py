"""The garment feature network: the shipped one loads and embeds any size; `atelier features train` works."""

import json
from pathlib import Path

import numpy as np
import pytest

from atelier.cli import main
from edge.bundle import file_sha256
from edge.procedural_garments import render_garment, write_dataset
from trainer.features import CARD_FILE, MODEL_FILE, feature_dir, load_feature_net


@pytest.fixture(scope="module")
def net():
    return load_feature_net()


def test_shipped_network_is_small_and_documented():
    folder = feature_dir()
    card = json.loads((folder / CARD_FILE).read_text())
    assert (folder / MODEL_FILE).stat().st_size < 5 * 1024 * 1024
    assert card["sha256"] == file_sha256(folder / MODEL_FILE)
    assert card["command"][:3] == ["atelier", "features", "train"]
    assert card["data"]["n_validation"] > 0
    assert 0.5 < card["val_accuracy"] <= 1.0  # a trained network, not a placeholder (10 classes: chance is 0.1)
    assert len(card["class_names"]) == 10


def test_features_of_any_size_through_one_resize(net):
    rng = np.random.default_rng(0)
    pictures = np.stack([render_garment(kind, 64, rng) for kind in ("dress", "t-shirt", "trousers", "dress")])
    feats, probs = net(pictures)
    assert feats.shape == (4, net.feature_dim) and net.feature_dim == 256
    assert probs.shape == (4, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # The same pictures at 128 px (each pixel doubled) are resized back to 64 px inside the model.
    big_feats, _ = net(pictures.repeat(2, axis=1).repeat(2, axis=2))
    same = np.linalg.norm(big_feats - feats, axis=1)
    other = np.linalg.norm(feats[:, None] - feats[None], axis=2)[np.triu_indices(4, 1)]
    assert same.max() < 0.5 * other.min()


def test_features_refuse_non_uint8(net):
    with pytest.raises(ValueError, match="uint8"):
        net(np.zeros((2, 32, 32, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="uint8"):
        net(np.zeros((32, 32, 3), dtype=np.uint8))


def test_class_aliases(net):
    assert net.class_index("pants") == net.class_names.index("pants")
    assert net.class_index("trousers") == net.class_names.index("pants")
    assert net.class_index("ball-gown") is None


def test_features_train_cli_writes_a_loadable_network(tmp_path: Path, capsys):
    data = tmp_path / "data"
    write_dataset(data / "train", n_per_class=8, size_px=64, seed=1, kinds=("dress", "t-shirt"))
    write_dataset(data / "validation", n_per_class=3, size_px=64, seed=2, kinds=("dress", "t-shirt"))
    out = tmp_path / "features"
    code = main(["features", "train", "--data", str(data), "--out", str(out), "--epochs", "1", "--batch-size", "8",
                 "--no-progress"])
    assert code == 0
    assert "validation accuracy" in capsys.readouterr().out
    card = json.loads((out / CARD_FILE).read_text())
    assert card["class_names"] == ["dress", "t-shirt"]
    assert card["data"]["n_train"] == 16 and card["data"]["n_validation"] == 6
    assert 0.0 <= card["val_accuracy"] <= 1.0
    assert card["training"]["epochs"] == 1
    trained = load_feature_net(out)
    feats, probs = trained(np.zeros((3, 40, 40, 3), dtype=np.uint8))
    assert feats.shape == (3, 256) and probs.shape == (3, 2)


def test_features_train_refuses_a_dataset_without_validation(tmp_path: Path, caplog):
    write_dataset(tmp_path / "flat", n_per_class=4, size_px=40, seed=1, kinds=("dress", "t-shirt"))
    code = main(["features", "train", "--data", str(tmp_path / "flat"), "--out", str(tmp_path / "f")])
    assert code == 2
    assert "train/ and validation/" in caplog.text
    assert not (tmp_path / "f").exists()
    assert main(["features", "train", "--data", str(tmp_path / "flat"), "--out", str(tmp_path / "f"),
                 "--epochs", "0"]) == 2
    assert "--epochs" in caplog.text

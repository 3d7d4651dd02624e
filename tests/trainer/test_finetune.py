"""`atelier finetune`: FreezeD + DiffAugment on captures, a new class in a conditional model, mixing with the
original data, before/after evaluation and a new bundle that the kiosk runtime can load."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from atelier.cli import main as atelier_main
from edge.capture.archive import export_archive
from edge.capture.store import CaptureStore, FrameQuality
from edge.errors import UserError
from edge.procedural_garments import render_garment
from trainer import checkpoints
from trainer.config import TrainConfig, preset
from trainer.finetune import FinetuneOptions, finetune, freeze_lower_blocks, transfer_weights, widen_rows
from trainer.networks import build_discriminator

QUALITY = FrameQuality(150.0, 120.0, 0.0, 0.0, 1)


def capture_store(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """A capture store of procedural garments (96 px JPEGs): {class: n}; unknown kinds draw dresses."""
    import cv2

    rng = np.random.default_rng(seed)
    with CaptureStore(root, min_free_bytes=0) as store:
        for name, n in counts.items():
            kind = name if name in ("t-shirt", "dress", "trousers") else "dress"
            for _ in range(n):
                rgb = render_garment(kind, 96, rng)
                if name not in ("t-shirt", "dress", "trousers"):
                    rgb = np.ascontiguousarray(rgb[::-1])  # a "skirt": an upside-down dress
                _, buf = cv2.imencode(".jpg", rgb[:, :, ::-1])
                store.add_jpeg(buf.tobytes(), class_name=name, quality=QUALITY, width=96, height=96)
    return root


def _ckpt(run: Path) -> checkpoints.Checkpoint:
    ckpt = checkpoints.read_latest(run / "checkpoints")
    assert ckpt is not None
    return ckpt


def test_widen_rows_appends_the_mean_of_the_class_rows() -> None:
    old = np.arange(12, dtype=np.float32).reshape(6, 2)  # 4 latent rows, then 2 class rows
    new = widen_rows(old, (8, 2), n_old_classes=2)
    np.testing.assert_array_equal(new[:6], old)
    np.testing.assert_array_equal(new[6:], [[9.0, 10.0], [9.0, 10.0]])  # mean of rows 4 and 5
    with pytest.raises(ValueError):
        widen_rows(old, (6, 3), 2)


def test_freezed_freezes_all_but_the_top_blocks_and_transfer_copies_weights() -> None:
    cfg = preset("tiny", size_px=32, conditional=True, class_names=["a", "b"])
    d_old = build_discriminator(cfg)
    wide = preset("tiny", size_px=32, conditional=True, class_names=["a", "b", "c"])
    d_new = build_discriminator(wide)
    widened = transfer_weights(d_old, d_new, n_old_classes=2)
    assert widened == ["class_embed/embeddings"]
    emb_old = d_old.get_layer("class_embed").embeddings.numpy()
    emb_new = d_new.get_layer("class_embed").embeddings.numpy()
    np.testing.assert_allclose(emb_new, np.vstack([emb_old, emb_old.mean(0)]), rtol=1e-6)
    n_trainable = len(d_new.trainable_weights)
    frozen = freeze_lower_blocks(d_new, train_blocks=2)
    assert frozen[0] == "conv16" and "conv8" not in frozen and "conv4" not in frozen
    assert not d_new.get_layer("conv16").trainable and d_new.get_layer("conv8").trainable
    assert len(d_new.trainable_weights) == n_trainable - 2  # conv16's kernel and bias
    assert d_new.get_layer("logit").trainable and d_new.get_layer("class_embed").trainable


def test_finetune_a_new_class_end_to_end_into_a_running_kiosk(tiny_conditional_run: Path,
                                                              tiny_conditional_bundle: Path, tmp_path: Path) -> None:
    """Captures -> fine-tune (a new class) -> a bundle exported into the watched models folder of a running kiosk
    -> verified and hot-swapped in: the kiosk draws the new class."""
    import shutil

    import httpx
    from fixtures_kiosk import start_kiosk

    from edge.bundle import load_bundle

    models = tmp_path / "models"
    start = shutil.copytree(tiny_conditional_bundle, models / "start")
    kiosk = start_kiosk(start, models_dir=models, models_watch_s=0.2)
    try:
        store = capture_store(tmp_path / "captures", {"skirt": 10, "dress": 6})
        out = tmp_path / "tuned"
        result = finetune(tiny_conditional_run, store, out,
                          FinetuneOptions(steps=12, eval_n=16, progress=False, command=["pytest"],
                                          bundle_out=str(models / "tuned-int8")))
        new_id = load_bundle(result.bundle_dir).model_id
        with httpx.Client(base_url=kiosk.url, timeout=60) as client:
            deadline = time.monotonic() + 60
            while client.get("/api/info").json()["model_id"] != new_id:
                assert time.monotonic() < deadline, client.get("/healthz").json()
                time.sleep(0.1)
            assert client.get("/api/classes").json()["classes"][3] == {"id": 3, "name": "skirt"}
            designs = client.post("/api/generate", json={"n": 2, "class": "skirt"}).json()["designs"]
            assert [d["class"] for d in designs] == ["skirt", "skirt"]
            assert client.get(designs[0]["url"]).status_code == 200
            assert client.get("/healthz").json()["model_error"] is None
    finally:
        kiosk.stop()

    report = json.loads((out / "finetune.json").read_text())
    assert report["classes"]["new"] == ["skirt"]
    assert report["classes"]["model_after"] == ["dress", "t-shirt", "trousers", "skirt"]
    assert set(report["widened_weights"]) == {"project/kernel", "class_embed/embeddings"}
    assert report["freeze_d"]["from_checkpoint"] and "conv16" in report["freeze_d"]["frozen_layers"]
    for when in ("before", "after"):
        for name in ("dress", "skirt"):
            measured = report["evaluation"][when][name]
            assert math.isfinite(measured["kid"]["value"]) and measured["n_captures"] == {"dress": 6, "skirt": 10}[name]
            assert measured["fcd"] is None  # fewer captures than feature dimensions: KID only
    # FreezeD: the frozen block is bit-identical to the source run's; the top blocks and G moved.
    src, dst = _ckpt(tiny_conditional_run), _ckpt(out)
    cfg_out = TrainConfig.from_json(json.loads((out / "config.json").read_text()))
    for i, name in enumerate(w.path for w in build_discriminator(cfg_out).weights):
        if name in ("conv16/kernel", "conv16/bias"):  # (its power-iteration vector sn_u still updates)
            np.testing.assert_array_equal(src.arrays["discriminator"][i], dst.arrays["discriminator"][i])
        if name == "conv4/kernel":
            assert not np.array_equal(src.arrays["discriminator"][i], dst.arrays["discriminator"][i])
    assert any(a.shape == b.shape and not np.array_equal(a, b)
               for a, b in zip(src.arrays["generator"], dst.arrays["generator"], strict=True))
    # The output is a run folder like any other.
    assert cfg_out.class_names == ["dress", "t-shirt", "trousers", "skirt"] and cfg_out.diffaugment
    assert json.loads((out / "summary.json").read_text())["finetuned_from"] == str(tiny_conditional_run.resolve())
    assert (out / "samples" / "before.png").is_file() and (out / "samples" / "after.png").is_file()
    assert report["bundle"]["dir"] == str(result.bundle_dir.resolve())


def test_finetune_unconditional_from_a_tar_mixed_with_the_original_data(tiny_run: Path, tmp_path: Path) -> None:
    store = capture_store(tmp_path / "captures", {"t-shirt": 6})
    tar_path = export_archive(store, tmp_path / "captures.tar")
    out = tmp_path / "tuned"
    result = finetune(tiny_run, tar_path, out, FinetuneOptions(steps=6, mix_original=True, export=False,
                                                                eval_n=8, progress=False))
    data = result.report["data"]
    assert data["n_captures"] == 6 and data["n_original"] == 72
    assert data["capture_repeats"] == 12 and data["capture_share"] == 0.5  # 6 x 12 beside the 72 originals
    assert result.bundle_dir is None and not (tmp_path / "tuned-int8").exists()
    assert result.report["conditional"] is False and result.report["classes"]["new"] == []
    assert (out / "generator.keras").is_file()


def test_finetune_refuses_bad_inputs(tiny_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = capture_store(tmp_path / "captures", {"dress": 3})
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    cases = [
        (["--captures", str(store), "--out", str(tmp_path / "busy")], "not empty"),
        (["--captures", str(store), "--out", str(tmp_path / "a"), "--steps", "0"], "--steps must be at least 1"),
        (["--captures", str(store), "--out", str(tmp_path / "a"), "--capture-share", "1.5"], "--capture-share"),
        (["--captures", str(tmp_path / "none"), "--out", str(tmp_path / "a")], "does not exist"),
        (["--captures", str(store), "--out", str(tmp_path / "a"), "--mix-original", "--original-data",
          str(tmp_path / "gone")], "is not here"),
    ]
    for extra, message in cases:
        caplog.clear()
        assert atelier_main(["finetune", "--from", str(tiny_run), *extra, "--no-progress"]) == 2
        assert message in caplog.text
    with pytest.raises(UserError, match=r"no-run: no such folder"):
        finetune(tmp_path / "no-run", store, tmp_path / "b", FinetuneOptions(progress=False))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"config\.json is missing"):
        finetune(tmp_path / "empty", store, tmp_path / "b", FinetuneOptions(progress=False))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()

"""`DesignGenerator` and `atelier generate` on real int8 bundles with the LiteRT interpreter."""

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atelier.cli import main as atelier
from edge.bundle import TensorQuant, load_bundle
from edge.designs import DesignGenerator, design_file_names, quantize
from edge.errors import UserError


def test_same_seed_same_latents_and_designs(tiny_bundle: Path) -> None:
    gen = DesignGenerator(load_bundle(tiny_bundle), batch=1)
    assert gen.backend == "ai_edge_litert"
    z1, z2, z3 = gen.sample_latents(6, seed=4), gen.sample_latents(6, seed=4), gen.sample_latents(6, seed=5)
    assert z1.dtype == np.float32 and z1.shape == (6, gen.bundle.z_dim)
    np.testing.assert_array_equal(z1, z2)
    assert not np.array_equal(z1, z3)
    # Row i does not depend on n (design IDs name "sample i of seed s"): a longer draw extends a shorter one.
    np.testing.assert_array_equal(gen.sample_latents(40, seed=4)[:6], z1)
    a, b = gen.generate(z1), gen.generate(z2)
    assert a.dtype == np.uint8 and a.shape == (6, 32, 32, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, gen.generate(z3))
    # Different latents give different designs (the model is not collapsed to one picture).
    assert len({img.tobytes() for img in a}) == 6


def test_latents_follow_the_bundle_prior(tiny_bundle: Path) -> None:
    gen = DesignGenerator(load_bundle(tiny_bundle))
    z = gen.sample_latents(4000, seed=0)
    assert gen.bundle.z_distribution == "normal"
    assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1.0) < 0.02
    with pytest.raises(UserError, match="at least 1"):
        gen.sample_latents(0, seed=0)
    with pytest.raises(UserError, match="non-negative"):
        gen.sample_latents(3, seed=-1)


def test_batch_model_pads_the_last_chunk(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    one, eight = DesignGenerator(bundle, batch=1), DesignGenerator(bundle, batch=8)
    z = one.sample_latents(11, seed=7)  # one full chunk of 8 and a padded chunk of 3
    np.testing.assert_array_equal(eight.generate(z), one.generate(z))
    np.testing.assert_array_equal(eight.generate(z[:1]), one.generate(z[:1]))


def test_generate_rejects_bad_latents_and_classes(tiny_bundle: Path, tiny_conditional_bundle: Path) -> None:
    gen = DesignGenerator(load_bundle(tiny_bundle))
    z_dim = gen.bundle.z_dim
    for bad in (np.zeros((0, z_dim)), np.zeros((2, z_dim + 1)), np.zeros(z_dim), np.full((1, z_dim), np.nan)):
        with pytest.raises(UserError):
            gen.generate(bad)
    with pytest.raises(UserError, match="unconditional"):
        gen.generate(np.zeros((1, z_dim)), class_ids=[0])
    cond = DesignGenerator(load_bundle(tiny_conditional_bundle))
    with pytest.raises(UserError, match="class ids must be in"):
        cond.generate(np.zeros((2, z_dim)), class_ids=[0, 3])
    with pytest.raises(UserError, match="one per latent"):
        cond.generate(np.zeros((2, z_dim)), class_ids=[0])


def test_one_generator_is_safe_across_threads(tiny_bundle: Path) -> None:
    gen = DesignGenerator(load_bundle(tiny_bundle), batch=8)
    latents = [gen.sample_latents(9, seed=s) for s in range(6)]
    expected = [gen.generate(z) for z in latents]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        for _ in range(3):
            results[i] = gen.generate(latents[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(6):
        np.testing.assert_array_equal(results[i], expected[i])


def test_quantize_follows_the_int8_spec(tiny_bundle: Path) -> None:
    spec = TensorQuant(dtype="int8", shape=(1, 4), scale=0.5, zero_point=-3)
    # q = round(x / scale) + zero_point, clipped to int8
    np.testing.assert_array_equal(quantize(np.array([[0.0, 1.0, -100.0, 100.0]]), spec), [[-3, -1, -128, 127]])
    assert quantize(np.zeros((1, 4)), spec).dtype == np.int8
    float_spec = TensorQuant(dtype="float32", shape=(1, 4), scale=None, zero_point=None)
    assert quantize(np.ones((1, 4), dtype=np.float64), float_spec).dtype == np.float32
    # The bundle's z input: latents of the prior land well inside the int8 grid (few clipped values).
    entry = load_bundle(tiny_bundle).models[1]
    z = DesignGenerator(load_bundle(tiny_bundle)).sample_latents(500, seed=1)
    q = quantize(z, entry.inputs[0]).astype(np.int16)
    assert np.mean((q == -128) | (q == 127)) < 0.01


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "RGB"
        return np.asarray(image)


def test_generate_command_writes_pngs_grid_and_npz(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    expected = DesignGenerator(bundle, batch=1).generate(DesignGenerator(bundle).sample_latents(5, seed=11))
    out = tmp_path / "designs"
    assert atelier(["generate", str(tiny_bundle), "--n", "5", "--out", str(out), "--seed", "11"]) == 0
    names = design_file_names(bundle.model_id, 11, 5)
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    pictures = np.stack([read_png(out / name) for name in names])
    np.testing.assert_array_equal(pictures, expected)

    npz = tmp_path / "designs.npz"
    assert atelier(["generate", str(tiny_bundle), "--n", "5", "--out", str(npz), "--seed", "11"]) == 0
    with np.load(npz) as data:
        assert data["images"].dtype == np.uint8 and data["images"].shape == (5, 32, 32, 3)
        np.testing.assert_array_equal(data["images"], expected)
        assert str(data["model_id"]) == bundle.model_id and int(data["seed"]) == 11

    grid = tmp_path / "grid.png"
    assert atelier(["generate", str(tiny_bundle), "--n", "5", "--out", str(grid), "--grid", "--seed", "11"]) == 0
    picture = read_png(grid)
    # 5 designs -> 3 columns, 2 rows of 32 px with a 2 px white border.
    assert picture.shape == (2 + 2 * 34, 2 + 3 * 34, 3)
    np.testing.assert_array_equal(picture[2:34, 2:34], expected[0])
    np.testing.assert_array_equal(picture[36:68, 2:34], expected[3])
    assert (picture[36:68, 70:102] == 255).all()  # the sixth cell is empty


def test_generate_command_refuses_to_overwrite(tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "designs"
    argv = ["generate", str(tiny_bundle), "--n", "3", "--out", str(out), "--seed", "1"]
    assert atelier(argv) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    for p in out.iterdir():
        p.write_bytes(b"user's own file")
    assert atelier(argv) == 2
    assert all(p.read_bytes() == b"user's own file" for p in out.iterdir())  # nothing lost
    assert atelier([*argv, "--overwrite"]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # same seed, same files
    npz = tmp_path / "keep.npz"
    npz.write_bytes(b"precious")
    assert atelier(["generate", str(tiny_bundle), "--n", "2", "--out", str(npz)]) == 2
    assert npz.read_bytes() == b"precious"


def test_generate_command_conditional_class(tiny_conditional_bundle: Path, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_conditional_bundle)
    gen = DesignGenerator(bundle, batch=8)
    z = gen.sample_latents(8, seed=2)
    dress = bundle.class_index("dress")
    npz = tmp_path / "dresses.npz"
    argv = ["generate", str(tiny_conditional_bundle), "--n", "8", "--out", str(npz), "--seed", "2"]
    assert atelier([*argv, "--class", "dress"]) == 0
    with np.load(npz) as data:
        np.testing.assert_array_equal(data["images"], gen.generate(z, [dress] * 8))
        assert (data["class_ids"] == dress).all()
    # Without --class the designs go round the classes.
    mixed = tmp_path / "mixed.npz"
    argv[5] = str(mixed)
    assert atelier(argv) == 0
    with np.load(mixed) as data:
        ids = np.arange(8) % 3
        np.testing.assert_array_equal(data["class_ids"], ids)
        np.testing.assert_array_equal(data["images"], gen.generate(z, ids))
    # A grid going round the classes has one column per class when the count allows (6 designs, 3 classes).
    picture_path = tmp_path / "classes.png"
    assert atelier(["generate", str(tiny_conditional_bundle), "--n", "6", "--out", str(picture_path), "--grid",
                    "--seed", "2"]) == 0
    picture = read_png(picture_path)
    assert picture.shape == (2 + 2 * 34, 2 + 3 * 34, 3)
    six = gen.generate(gen.sample_latents(6, seed=2), np.arange(6) % 3)
    np.testing.assert_array_equal(picture[36:68, 2:34], six[3])  # row 2, column 1: the first class again


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--n", "0", "--out", "x"], "--n must be at least 1"),
        (["--n", "-3", "--out", "x"], "--n must be at least 1"),
        (["--n", "10001", "--out", "x"], "--n must be at most 10000"),
        (["--n", "2", "--out", "x", "--class", "dress"], "unconditional"),
        (["--n", "2", "--out", "grid.jpg", "--grid"], "must end in .png"),
        (["--n", "2", "--out", "one.png"], "add --grid"),
        (["--n", "2", "--out", "x", "--seed", "-1"], "non-negative"),
        (["--n", "2", "--out", "x", "--batch", "4"], "no model for batch size 4"),
        (["--n", "2", "--out", "x", "--threads", "0"], "--threads"),
    ],
)
def test_generate_command_user_errors(
    tiny_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, extra: list[str], needle: str
) -> None:
    extra = [str(tmp_path / a) if i > 0 and extra[i - 1] == "--out" else a for i, a in enumerate(extra)]
    assert atelier(["generate", str(tiny_bundle), *extra]) == 2
    assert needle in caplog.text
    assert list(tmp_path.iterdir()) == []  # a refused command writes nothing


def test_generate_command_unknown_class_and_damaged_bundle(
    tiny_conditional_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    assert atelier(["generate", str(tiny_conditional_bundle), "--n", "2", "--out", str(out), "--class", "hat"]) == 2
    assert "unknown class 'hat'" in caplog.text and "dress" in caplog.text
    damaged = Path(shutil.copytree(tiny_conditional_bundle, tmp_path / "damaged"))
    model = damaged / "generator_b8.tflite"
    model.write_bytes(model.read_bytes()[:-100])
    assert atelier(["generate", str(damaged), "--n", "2", "--out", str(out)]) == 2
    assert "truncated" in caplog.text
    assert not out.exists()

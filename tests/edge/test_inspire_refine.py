"""The inspire search (edge.inspire_refine) with the real int8 generators of the tiny bundle and the committed
default: its distance, its determinism, its prior, and what it buys on a plain coloured garment.
Bad inputs tried: pictures of the wrong shape or side, distances of the wrong length or not finite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_inspire_edge import garment_bgr

from edge.bundle import load_bundle
from edge.designs import DesignGenerator
from edge.inspire import Encoding, PhotoEncoder
from edge.inspire_refine import (
    CATALOGUE_PICKS,
    LOCAL_PER_ROUND,
    ROUNDS,
    Search,
    catalogue_latents,
    likeness_distance,
    make_catalogue,
    refine,
)
from edge.kernels import postprocess
from edge.kiosk.camera import SyntheticSource

DEFAULT = Path(__file__).resolve().parents[2] / "models" / "default"


def _plain(rgb: tuple[int, int, int], side: int = 32) -> np.ndarray:
    return np.full((side, side, 3), rgb, np.uint8)


def test_likeness_distance_ranks_by_picture_and_colour() -> None:
    target = _plain((200, 40, 40))
    assert likeness_distance(target[None], target)[0] == 0.0
    near, far = _plain((180, 50, 50)), _plain((40, 40, 200))
    d = likeness_distance(np.stack([far, near, target]), target)
    assert d[2] < d[1] < d[0]
    # The centre counts more than the border: the same change in the middle costs more than at the edge.
    middle, edge = target.copy(), target.copy()
    middle[12:20, 12:20] = 0
    edge[0:8, 0:8] = 0
    d = likeness_distance(np.stack([middle, edge]), target)
    assert d[0] > d[1] > 0


@pytest.mark.parametrize("designs, target", [
    (np.zeros((2, 32, 32, 3), np.uint8), np.zeros((16, 16, 3), np.uint8)),  # sides differ
    (np.zeros((2, 24, 24, 3), np.uint8), np.zeros((24, 24, 3), np.uint8)),  # 16 does not divide the side
    (np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32, 3), np.uint8)),  # one picture, not a batch
    (np.zeros((2, 32, 32, 4), np.uint8), np.zeros((32, 32, 4), np.uint8)),  # RGBA
])
def test_likeness_distance_refuses_pictures_it_cannot_compare(designs: np.ndarray, target: np.ndarray) -> None:
    with pytest.raises(ValueError, match="square RGB"):
        likeness_distance(designs, target)


def test_search_refuses_pictures_that_do_not_fit_its_candidates() -> None:
    search = Search(Encoding(np.ones(8, np.float32), None, None), _plain((1, 2, 3)), "normal")
    n = len(search.candidates())
    with pytest.raises(ValueError, match="finite 16 x 16 pictures"):
        search.take(np.zeros((n - 1, 16, 16, 3)))
    with pytest.raises(ValueError, match="finite 16 x 16 pictures"):
        search.take(np.full((n, 16, 16, 3), np.nan))
    with pytest.raises(ValueError, match="finite 16 x 16 pictures"):
        search.take(np.zeros((n, 32, 32, 3)))


def _catalogue(gen: DesignGenerator) -> np.ndarray:
    return make_catalogue(gen.generate, gen.bundle.z_dim, gen.bundle.z_distribution)


def _distance(gen: DesignGenerator, z: np.ndarray, target: np.ndarray) -> float:
    return float(likeness_distance(gen.generate(z[None]), target)[0])


def test_the_search_runs_when_the_encoder_misses_the_colour_and_is_deterministic(tiny_inspire_bundle: Path) -> None:
    bundle = load_bundle(tiny_inspire_bundle)
    gen = DesignGenerator(bundle, batch=max(bundle.batches))
    encoding = PhotoEncoder(bundle).encode(garment_bgr((200, 40, 40)))
    catalogue = _catalogue(gen)
    # A picture the encoder's design misses in colour (pure green: the tiny model draws no such thing).
    target = _plain((0, 255, 0))
    result = refine(encoding, target, bundle.z_distribution, gen.generate, catalogue)
    assert result.searched and result.candidates == 1 + LOCAL_PER_ROUND * len(ROUNDS) + CATALOGUE_PICKS
    assert result.distance < result.start_distance
    assert result.start_distance == pytest.approx(_distance(gen, encoding.z, target), rel=1e-6)
    assert result.distance == pytest.approx(_distance(gen, result.encoding.z, target), rel=1e-6)
    bank = catalogue_latents(bundle.z_dim, bundle.z_distribution)
    on_sphere = np.linalg.norm(result.encoding.z) == pytest.approx(np.sqrt(bundle.z_dim), rel=1e-3)
    assert on_sphere or any(np.array_equal(result.encoding.z, b) for b in bank)  # on the prior either way
    again = refine(encoding, target, bundle.z_distribution, gen.generate, catalogue)
    assert np.array_equal(again.encoding.z, result.encoding.z)  # one picture, one answer
    magenta = _plain((255, 0, 255))
    other = refine(encoding, magenta, bundle.z_distribution, gen.generate, catalogue)
    assert not np.array_equal(other.encoding.z, result.encoding.z)  # another picture, another answer
    alone = refine(encoding, target, bundle.z_distribution, gen.generate)  # no catalogue: the local rounds only
    assert alone.searched and alone.candidates == 1 + LOCAL_PER_ROUND * len(ROUNDS)
    assert alone.distance <= alone.start_distance
    with pytest.raises(ValueError, match="catalogue"):
        Search(encoding, target, bundle.z_distribution, catalogue[:10])


def test_the_encoders_latent_is_kept_when_its_design_has_the_colour(tiny_inspire_bundle: Path) -> None:
    bundle = load_bundle(tiny_inspire_bundle)
    gen = DesignGenerator(bundle, batch=max(bundle.batches))
    encoding = PhotoEncoder(bundle).encode(garment_bgr((200, 40, 40)))
    own = gen.generate(encoding.z[None])[0]  # the picture is the encoder's own design: nothing to search for
    result = refine(encoding, own, bundle.z_distribution, gen.generate, _catalogue(gen))
    assert not result.searched and result.candidates == 1  # the check alone: its own design
    assert result.encoding is encoding and result.distance == result.start_distance == 0.0


def test_a_uniform_prior_stays_in_its_box_with_steps_in_its_std_devs() -> None:
    z = np.zeros(4000, np.float32)
    z[:8] = 0.95
    search = Search(Encoding(z, None, None), _plain((9, 9, 9)), "uniform")
    assert np.array_equal(search.candidates(), z[None])  # the check: the encoder's own design alone
    search.take(np.full((1, 16, 16, 3), 250.0))  # its design misses the picture's colour: the search runs
    candidates = search.candidates()
    assert candidates.min() >= -1.0 and candidates.max() <= 1.0 and np.array_equal(candidates[0], z)
    steps = candidates[1:, 8:] - z[8:]  # away from the box's faces: nothing clipped
    assert np.std(steps) == pytest.approx(ROUNDS[0] / np.sqrt(3.0), rel=0.05)  # 0.8 std devs of U(-1, 1)


def test_on_the_default_model_the_search_brings_a_blue_shirt_nearer_in_colour() -> None:
    """What the search is for: the default's encoder alone gives a blue t-shirt's designs no bluer than random ones."""
    bundle = load_bundle(DEFAULT)
    gen = DesignGenerator(bundle, batch=max(bundle.batches))
    encoder = PhotoEncoder(bundle)
    blue = np.asarray((30, 60, 170), np.float64)
    catalogues: dict[int | None, np.ndarray] = {}  # the kiosk keeps one per class of a conditional model
    before, after = [], []
    for shade_frames in (0, 20, 40):  # the synthetic backdrop changes colour from frame to frame
        source = SyntheticSource(640, 480, garment="t-shirt", colour=(30, 60, 170), fps=1000.0)
        source.open()
        for _ in range(shade_frames):
            source.read()
        frame = source.read()
        encoding = encoder.encode(frame)
        cls = encoding.class_id

        def draw(z: np.ndarray, cls: int | None = cls) -> np.ndarray:
            return gen.generate(z, None if cls is None else [cls] * len(z))

        if cls not in catalogues:
            catalogues[cls] = make_catalogue(draw, bundle.z_dim, bundle.z_distribution)
        spec = encoder.entry.input
        target = postprocess(encoder.model_input(frame)[None], scale=spec.scale, zero_point=spec.zero_point)[0]
        result = refine(encoding, target, bundle.z_distribution, draw, catalogues[cls])
        for z, out in ((encoding.z, before), (result.encoding.z, after)):
            design = draw(z[None])[0].astype(np.float64)
            out.append(np.linalg.norm(design[48:80, 48:80].reshape(-1, 3).mean(0) - blue))
        assert result.searched  # the encoder alone misses this flat blue (colour error over COLOUR_MISS_RGB)
    assert np.mean(after) < 0.85 * np.mean(before), (before, after)

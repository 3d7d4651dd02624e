"""Design IDs: strict parsing, canonical round trips, and the latent arithmetic behind them."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.kiosk import latents
from edge.kiosk.latents import (
    DesignId,
    DesignIdError,
    LatentResolver,
    Mix,
    Neighbour,
    Sample,
    parse_design_id,
    slerp,
    walk_frame,
)

MODEL = "0123456789ab"


def prior_sampler(distribution: str, z_dim: int):
    """The bundle prior as DesignGenerator.sample_latents draws it (the API tests check they agree)."""

    def sample(n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        if distribution == "uniform":
            return rng.uniform(-1.0, 1.0, size=(n, z_dim)).astype(np.float32)
        return rng.standard_normal(size=(n, z_dim), dtype=np.float32)

    return sample


samples = st.builds(Sample, st.integers(0, latents.MAX_SEED), st.integers(0, latents.MAX_INDEX))


def _extend(children: st.SearchStrategy) -> st.SearchStrategy:
    neighbours = st.builds(Neighbour, children, st.integers(0, latents.MAX_NEIGHBOUR),
                           st.integers(1, latents.MAX_RADIUS_MILLI))
    mixes = st.integers(1, latents.MAX_MIX_STEPS).flatmap(
        lambda n: st.builds(Mix, children, children, st.integers(0, n), st.just(n)))
    return neighbours | mixes


latent_trees = st.recursive(samples, _extend, max_leaves=6)


def _depth(latent) -> int:
    if isinstance(latent, Sample):
        return 0
    if isinstance(latent, Neighbour):
        return 1 + _depth(latent.parent)
    return 1 + max(_depth(latent.a), _depth(latent.b))


@settings(max_examples=300, deadline=None)
@given(latent_trees, st.none() | st.integers(0, 40))
def test_every_design_id_round_trips_and_is_url_safe(latent, class_id) -> None:
    design = DesignId(MODEL, class_id, latent)
    text = str(design)
    if len(text) > latents.MAX_ID_CHARS or _depth(latent) > latents.MAX_DEPTH:
        with pytest.raises(DesignIdError):
            parse_design_id(text)
        return
    assert re.fullmatch(r"[0-9a-z.\-]+", text)
    assert parse_design_id(text) == design


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "1..1200 characters"),
        ("0123456789AB.u.s1-0", "lowercase"),
        ("0123456789a.u.s1-0", "12-hex-digit"),
        ("0123456789ag.u.s1-0", "12-hex-digit"),
        (f"{MODEL}.u", "MODEL.CLASS.OPERATION"),
        (f"{MODEL}.x.s1-0", "class"),
        (f"{MODEL}.c.s1-0", "class"),
        (f"{MODEL}.c01.s1-0", "class"),
        (f"{MODEL}.u.q1-0", "unknown operation"),
        (f"{MODEL}.u.s01-0", "unknown operation"),
        (f"{MODEL}.u.s1--1", "unknown operation"),
        (f"{MODEL}.u.s4294967296-0", "seed"),
        (f"{MODEL}.u.s1-4096", "sample index"),
        (f"{MODEL}.u.n1-0.s1-0", "radius"),
        (f"{MODEL}.u.n1-2001.s1-0", "radius"),
        (f"{MODEL}.u.n65536-10.s1-0", "neighbour number"),
        (f"{MODEL}.u.n1-10", "ends early"),
        (f"{MODEL}.u.m3-2.s1-0.s1-1", "beyond"),
        (f"{MODEL}.u.m0-0.s1-0.s1-1", "mix steps"),
        (f"{MODEL}.u.m0-65.s1-0.s1-1", "mix steps"),
        (f"{MODEL}.u.m1-2.s1-0", "ends early"),
        (f"{MODEL}.u.s1-0.s1-1", "after its last operation"),
        (f"{MODEL}.u.s1-0.", "after its last operation"),
        (f"{MODEL}.u.s1-0/../x", "lowercase"),
        (f"{MODEL}.u.s1-0%2e", "lowercase"),
        (f"{MODEL}.u." + "n1-10." * 9 + "s1-0", "deeper"),
        (f"{MODEL}.u." + "n1-1000." * 160 + "s1-0", "characters"),
    ],
)
def test_bad_design_ids_are_refused_with_a_reason(text: str, complaint: str) -> None:
    with pytest.raises(DesignIdError, match=re.escape(complaint)):
        parse_design_id(text)


def test_slerp_ends_exactly_on_its_endpoints_and_keeps_the_norm() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(64), rng.standard_normal(64)
    assert np.array_equal(slerp(a, b, 0.0), a)
    assert np.array_equal(slerp(a, b, 1.0), b)
    b_same_norm = b / np.linalg.norm(b) * np.linalg.norm(a)
    for t in (0.25, 0.5, 0.75):
        assert np.linalg.norm(slerp(a, b_same_norm, t)) == pytest.approx(np.linalg.norm(a), rel=1e-9)
    # Parallel and zero vectors fall back to a straight line instead of dividing by zero.
    assert np.allclose(slerp(a, 2 * a, 0.5), 1.5 * a)
    assert np.allclose(slerp(np.zeros(64), a, 0.5), 0.5 * a)


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_neighbours_are_deterministic_near_their_parent_and_inside_the_prior(distribution: str) -> None:
    z_dim = 256
    resolver = LatentResolver(prior_sampler(distribution, z_dim), distribution)
    parent = Sample(7, 3)
    z = resolver.vector(parent)
    assert np.array_equal(z, prior_sampler(distribution, z_dim)(4, 7)[3])
    near = resolver.vector(Neighbour(parent, 0, 100))
    far = resolver.vector(Neighbour(parent, 0, 1000))
    assert np.array_equal(near, resolver.vector(Neighbour(parent, 0, 100)))  # same ID, same bits
    assert not np.array_equal(near, resolver.vector(Neighbour(parent, 1, 100)))
    assert 0 < np.linalg.norm(near - z) < np.linalg.norm(far - z)
    if distribution == "uniform":
        assert far.min() >= -1.0 and far.max() <= 1.0
    else:
        # The variance-preserving step keeps neighbours of N(0, I) samples distributed as N(0, I).
        many = np.stack([resolver.vector(Neighbour(Sample(s, 0), 0, 1000)) for s in range(40)])
        assert many.std() == pytest.approx(1.0, abs=0.05)


def test_mixes_interpolate_from_a_to_b() -> None:
    resolver = LatentResolver(prior_sampler("normal", 32), "normal")
    a, b = Sample(1, 0), Neighbour(Sample(2, 5), 3, 500)
    za, zb = resolver.vector(a), resolver.vector(b)
    assert np.array_equal(resolver.vector(Mix(a, b, 0, 6)), za)
    assert np.array_equal(resolver.vector(Mix(a, b, 6, 6)), zb)
    dists = [np.linalg.norm(resolver.vector(Mix(a, b, k, 6)) - za) for k in range(7)]
    assert dists == sorted(dists)


def test_the_attract_walk_passes_through_its_keyframes_and_loops() -> None:
    steps = 12
    first = walk_frame(5, 0, steps)
    assert first == Mix(Sample(5, 0), Sample(5, 1), 0, steps)
    assert walk_frame(5, steps, steps) == Mix(Sample(5, 1), Sample(5, 2), 0, steps)
    loop = latents.WALK_KEYFRAMES * steps
    assert walk_frame(5, loop, steps) == first
    assert walk_frame(5, loop - 1, steps) == Mix(Sample(5, latents.WALK_KEYFRAMES - 1), Sample(5, 0),
                                                  steps - 1, steps)

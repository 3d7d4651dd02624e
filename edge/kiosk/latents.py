"""Design IDs and the latent operations they name.

A design ID is a compact, URL-safe string that regenerates one design exactly::

    ID     := MODEL "." CLASS "." EXPR
    MODEL  := 12 lowercase hex digits (Bundle.model_id: the sha256 of the bundle's manifest)
    CLASS  := "u" (unconditional model) | "c" INDEX (class index in the bundle's class_names)
    EXPR   := "s" SEED "-" I                 sample I of seed SEED: row I of sample_latents(I + 1, SEED)
            | "n" J "-" R "." EXPR           neighbour J of EXPR at radius R/1000 (prior std devs)
            | "m" K "-" N "." EXPR "." EXPR  step K of N on the great circle from the first EXPR to the second
            | "e" B32                        a latent the inspire encoder made from a photo (edge.inspire):
                                             z_dim int8 values q, lowercase base32 without padding, z = q / s
                                             (s = ENCODED_SCALE[z_distribution])

Expressions are written in prefix order, so nesting needs no brackets, e.g.
``3f2a9c0d1e4b.c1.m2-6.s42-0.n3-350.s42-5`` is step 2/6 of the mix from sample 0 of seed 42 to neighbour 3
of sample 5 of seed 42, drawn as class 1. Parsing is strict: numbers have no leading zeros or signs, every
field is range-checked and the string must be the canonical spelling of what it parses to; anything else is a
DesignIdError (the API answers 400). The model field is checked against the served bundle by the caller (409).

An encoded latent carries the photo's latent inside the ID (205 characters for z_dim 128), so an inspired
design is shareable and regenerates bit for bit on any kiosk serving the same model, with no photo kept.

The latent arithmetic is done in float64 and rounded to float32 once, with seeds derived from the parent's ID
text, so the same ID always gives the same latent bit for bit.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

MAX_ID_CHARS = 1200  # room for a mix of two encoded latents of z_dim 256 (2 x 410 characters)
MAX_DEPTH = 8
MAX_NODES = 64
MAX_SEED = 2**32 - 1
MAX_INDEX = 4095
MAX_NEIGHBOUR = 65_535
MAX_RADIUS_MILLI = 2000
MAX_MIX_STEPS = 64
# Keyframes of the attract-mode walk: it loops through samples 0..WALK_KEYFRAMES-1 of the walk seed.
WALK_KEYFRAMES = 8

_MODEL_RE = re.compile(r"[0-9a-f]{12}")
_NUM = r"(0|[1-9][0-9]{0,9})"
_SAMPLE_RE = re.compile(rf"s{_NUM}-{_NUM}")
_NEIGHBOUR_RE = re.compile(rf"n{_NUM}-{_NUM}")
_MIX_RE = re.compile(rf"m{_NUM}-{_NUM}")
_CLASS_RE = re.compile(rf"u|c{_NUM}")
_ENCODED_RE = re.compile(r"e([a-z2-7]{2,1100})")
# int8 step of an encoded latent: N(0, 1) latents keep +-3.97 at 1/32 steps (rounding error std 0.009);
# U(-1, 1) latents use the full int8 range.
ENCODED_SCALE: dict[str, float] = {"normal": 32.0, "uniform": 127.0}

Sampler = Callable[[int, int], np.ndarray]
"""(n, seed) -> float32 (n, z_dim) latents from the model's prior (DesignGenerator.sample_latents)."""


class DesignIdError(ValueError):
    """A design ID that does not parse; the message says which part is wrong."""


@dataclass(frozen=True)
class Sample:
    """Row `index` of the latents drawn with `seed`."""

    seed: int
    index: int


@dataclass(frozen=True)
class Neighbour:
    """A point near `parent`: a random direction chosen by `j`, at `radius_milli / 1000` prior std devs."""

    parent: Latent
    j: int
    radius_milli: int


@dataclass(frozen=True)
class Mix:
    """Step `step` of `steps` on the spherical interpolation from `a` (step 0) to `b` (step == steps)."""

    a: Latent
    b: Latent
    step: int
    steps: int


@dataclass(frozen=True)
class Encoded:
    """A photo's latent from the inspire encoder, quantized: int8 values `q` (bytes), z = q / ENCODED_SCALE."""

    q: bytes


Latent = Sample | Neighbour | Mix | Encoded


def encode_latent(z: np.ndarray, z_distribution: str) -> Encoded:
    """Quantize a float latent (z_dim,) to an Encoded leaf: q = clip(round(z * s), -127, 127)."""
    scale = ENCODED_SCALE[z_distribution]
    q = np.clip(np.round(np.asarray(z, np.float64) * scale), -127, 127).astype(np.int8)
    return Encoded(q.tobytes())


@dataclass(frozen=True)
class DesignId:
    """A parsed design ID: which model, which class (None when unconditional), which latent."""

    model_id: str
    class_id: int | None
    latent: Latent

    def __str__(self) -> str:
        cls = "u" if self.class_id is None else f"c{self.class_id}"
        return f"{self.model_id}.{cls}.{format_latent(self.latent)}"


def format_latent(latent: Latent) -> str:
    """The canonical EXPR spelling of a latent."""
    if isinstance(latent, Sample):
        return f"s{latent.seed}-{latent.index}"
    if isinstance(latent, Neighbour):
        return f"n{latent.j}-{latent.radius_milli}.{format_latent(latent.parent)}"
    if isinstance(latent, Encoded):
        return "e" + base64.b32encode(latent.q).decode("ascii").rstrip("=").lower()
    return f"m{latent.step}-{latent.steps}.{format_latent(latent.a)}.{format_latent(latent.b)}"


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise DesignIdError(message)


def _parse_expr(tokens: Iterator[str], depth: int, count: list[int]) -> Latent:
    _check(depth <= MAX_DEPTH, f"design ID nests deeper than {MAX_DEPTH} operations")
    count[0] += 1
    _check(count[0] <= MAX_NODES, f"design ID has more than {MAX_NODES} operations")
    token = next(tokens, None)
    _check(token is not None, "design ID ends early: an operation is missing its parent")
    assert token is not None
    if m := _SAMPLE_RE.fullmatch(token):
        seed, index = int(m[1]), int(m[2])
        _check(seed <= MAX_SEED, f"seed {seed} is out of range 0..{MAX_SEED}")
        _check(index <= MAX_INDEX, f"sample index {index} is out of range 0..{MAX_INDEX}")
        return Sample(seed, index)
    if m := _NEIGHBOUR_RE.fullmatch(token):
        j, radius = int(m[1]), int(m[2])
        _check(j <= MAX_NEIGHBOUR, f"neighbour number {j} is out of range 0..{MAX_NEIGHBOUR}")
        _check(1 <= radius <= MAX_RADIUS_MILLI,
               f"neighbour radius {radius} is out of range 1..{MAX_RADIUS_MILLI}")
        return Neighbour(_parse_expr(tokens, depth + 1, count), j, radius)
    if m := _MIX_RE.fullmatch(token):
        step, steps = int(m[1]), int(m[2])
        _check(1 <= steps <= MAX_MIX_STEPS, f"mix steps {steps} is out of range 1..{MAX_MIX_STEPS}")
        _check(step <= steps, f"mix step {step} is beyond its {steps} steps")
        a = _parse_expr(tokens, depth + 1, count)
        b = _parse_expr(tokens, depth + 1, count)
        return Mix(a, b, step, steps)
    if m := _ENCODED_RE.fullmatch(token):
        text = m[1].upper()
        try:
            q = base64.b32decode(text + "=" * (-len(text) % 8))
        except ValueError:
            raise DesignIdError("design ID has an encoded latent that does not decode") from None
        return Encoded(q)
    raise DesignIdError(f"design ID has an unknown operation {token[:20]!r} (expected s…, n…, m… or e…)")


def parse_design_id(text: str) -> DesignId:
    """Parse a design ID strictly.

    Args:
        text: the ID as found in a URL or JSON body.

    Returns:
        The parsed DesignId.

    Raises:
        DesignIdError: with a message naming the part that is wrong.
    """
    _check(isinstance(text, str), "design ID must be a string")
    _check(0 < len(text) <= MAX_ID_CHARS, f"design ID must be 1..{MAX_ID_CHARS} characters long")
    _check(re.fullmatch(r"[0-9a-z.\-]+", text) is not None,
           "design ID may only contain lowercase letters, digits, '.' and '-'")
    parts = text.split(".")
    _check(len(parts) >= 3, "design ID must look like MODEL.CLASS.OPERATION (e.g. 3f2a9c0d1e4b.u.s42-0)")
    model_id, cls = parts[0], parts[1]
    _check(_MODEL_RE.fullmatch(model_id) is not None, "design ID must start with the 12-hex-digit model id")
    m = _CLASS_RE.fullmatch(cls)
    _check(m is not None, f"design ID class {cls[:12]!r} must be 'u' or 'c' followed by a class number")
    assert m is not None
    class_id = None if cls == "u" else int(m[1])
    tokens = iter(parts[2:])
    latent = _parse_expr(tokens, 0, [0])
    _check(next(tokens, None) is None, "design ID has text after its last operation")
    design = DesignId(model_id, class_id, latent)
    _check(str(design) == text, "design ID is not in canonical form")
    return design


def _derived_rng(tag: str, *words: int) -> np.random.Generator:
    """A generator seeded by a text tag (a parent's ID) and small integers; stable across runs, machines."""
    digest = hashlib.sha256(tag.encode()).digest()
    entropy = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng([*words, *entropy])


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation between two latents (float64), falling back to a straight line when they are
    (anti)parallel or zero. slerp(a, b, 0) == a and slerp(a, b, 1) == b exactly."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return (1.0 - t) * a + t * b
    cos = float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))
    omega = float(np.arccos(cos))
    sin_omega = float(np.sin(omega))
    if sin_omega < 1e-6:
        return (1.0 - t) * a + t * b
    return (np.sin((1.0 - t) * omega) / sin_omega) * a + (np.sin(t * omega) / sin_omega) * b


class LatentResolver:
    """Turns latent expressions into vectors for one model's prior.

    Args:
        sampler: the model's prior sampler, (n, seed) -> float32 (n, z_dim).
        z_distribution: "uniform" (U(-1, 1)) or "normal" (N(0, 1)); neighbours and mixes stay in the prior.
    """

    def __init__(self, sampler: Sampler, z_distribution: str) -> None:
        if z_distribution not in ("uniform", "normal"):
            raise ValueError(f"unknown z_distribution {z_distribution!r}")
        self._sampler = sampler
        self._uniform = z_distribution == "uniform"
        self._encoded_scale = ENCODED_SCALE[z_distribution]
        self._z_dim: int | None = None

    def vector(self, latent: Latent) -> np.ndarray:
        """The float32 (z_dim,) latent for an expression."""
        return self._vector64(latent).astype(np.float32)

    def vectors(self, latents: list[Latent]) -> np.ndarray:
        """Stack of `vector` for many expressions: float32 (n, z_dim)."""
        return np.stack([self.vector(lat) for lat in latents])

    def _vector64(self, latent: Latent) -> np.ndarray:
        if isinstance(latent, Sample):
            rows = self._sampler(latent.index + 1, latent.seed)
            return np.asarray(rows[latent.index], dtype=np.float64)
        if isinstance(latent, Encoded):
            if self._z_dim is None:
                self._z_dim = int(self._sampler(1, 0).shape[1])
            if len(latent.q) != self._z_dim:
                raise DesignIdError(f"design ID has an encoded latent of {len(latent.q)} values; this model's "
                                    f"latents have {self._z_dim}")
            q = np.frombuffer(latent.q, dtype=np.int8).astype(np.float64)
            return np.clip(q / self._encoded_scale, -1.0, 1.0) if self._uniform else q / self._encoded_scale
        if isinstance(latent, Neighbour):
            z = self._vector64(latent.parent)
            r = latent.radius_milli / 1000.0
            eps = _derived_rng(format_latent(latent.parent), latent.j).standard_normal(z.shape[0])
            if self._uniform:
                # U(-1, 1) has std 1/sqrt(3): a radius in prior std devs, clipped back into the box.
                return np.clip(z + r * eps / np.sqrt(3.0), -1.0, 1.0)
            # Variance-preserving step: if z ~ N(0, I) so is the result.
            return (z + r * eps) / np.sqrt(1.0 + r * r)
        z = slerp(self._vector64(latent.a), self._vector64(latent.b), latent.step / latent.steps)
        return np.clip(z, -1.0, 1.0) if self._uniform else z


def walk_frame(seed: int, frame: int, walk_steps: int) -> Mix:
    """Frame `frame` of the attract-mode walk with `seed`: a loop through WALK_KEYFRAMES samples of the seed,
    `walk_steps` frames from one keyframe to the next."""
    segment = (frame // walk_steps) % WALK_KEYFRAMES
    nxt = (segment + 1) % WALK_KEYFRAMES
    return Mix(Sample(seed, segment), Sample(seed, nxt), frame % walk_steps, walk_steps)


def describe(latent: Latent) -> dict[str, object]:
    """A JSON-friendly description of one operation (the page shows it; parents are given as EXPR strings)."""
    if isinstance(latent, Sample):
        return {"op": "sample", "seed": latent.seed, "index": latent.index}
    if isinstance(latent, Encoded):
        return {"op": "encoded", "values": len(latent.q)}
    if isinstance(latent, Neighbour):
        return {"op": "neighbour", "j": latent.j, "radius": latent.radius_milli / 1000.0,
                "parent": format_latent(latent.parent)}
    return {"op": "mix", "step": latent.step, "steps": latent.steps,
            "a": format_latent(latent.a), "b": format_latent(latent.b)}

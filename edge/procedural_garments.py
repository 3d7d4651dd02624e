"""Procedural garment pictures: t-shirt, dress and trousers silhouettes with colours and patterns.

Tests, the synthetic camera and demos use these instead of real photos, so they run anywhere and nothing from the
CC0 dataset is copied into the repo. Each picture is one garment, centred on a plain light background, drawn
with a random colour, a random pattern (plain, stripes, checks, dots) and a small random pose jitter.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

GARMENT_KINDS: tuple[str, ...] = ("t-shirt", "dress", "trousers")
PATTERNS: tuple[str, ...] = ("plain", "stripes", "checks", "dots")

# Silhouettes as polygons in a unit square (x right, y down), drawn scaled to the picture.
_SILHOUETTES: dict[str, np.ndarray] = {
    "t-shirt": np.array(
        [(0.38, 0.14), (0.62, 0.14), (0.86, 0.27), (0.78, 0.42), (0.70, 0.37), (0.70, 0.88),
         (0.30, 0.88), (0.30, 0.37), (0.22, 0.42), (0.14, 0.27)],
        dtype=np.float64,
    ),
    "dress": np.array(
        [(0.40, 0.10), (0.60, 0.10), (0.64, 0.30), (0.60, 0.44), (0.80, 0.90), (0.20, 0.90),
         (0.40, 0.44), (0.36, 0.30)],
        dtype=np.float64,
    ),
    "trousers": np.array(
        [(0.32, 0.10), (0.68, 0.10), (0.74, 0.92), (0.56, 0.92), (0.50, 0.38), (0.44, 0.92),
         (0.26, 0.92)],
        dtype=np.float64,
    ),
}


def _pattern_layer(size_px: int, colour: np.ndarray, pattern: str, rng: np.random.Generator) -> np.ndarray:
    """A size x size RGB layer filled with `colour` and the given pattern in a contrasting colour."""
    import cv2

    layer = np.empty((size_px, size_px, 3), dtype=np.uint8)
    layer[:] = colour
    accent = (255 - colour).astype(np.uint8) if rng.random() < 0.5 else rng.integers(0, 256, 3).astype(np.uint8)
    period = max(4, int(size_px * rng.uniform(0.06, 0.14)))
    if pattern == "stripes":
        rows = (np.arange(size_px) // (period // 2)) % 2 == 1
        layer[rows] = accent
    elif pattern == "checks":
        yy, xx = np.mgrid[0:size_px, 0:size_px]
        mask = ((yy // period) + (xx // period)) % 2 == 1
        layer[mask] = accent
    elif pattern == "dots":
        radius = max(1, period // 4)
        for y in range(period // 2, size_px, period):
            for x in range(period // 2, size_px, period):
                cv2.circle(layer, (x, y), radius, tuple(int(c) for c in accent), -1, lineType=cv2.LINE_AA)
    return layer


def render_garment(
    kind: str,
    size_px: int,
    rng: np.random.Generator,
    *,
    pattern: str | None = None,
    colour: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """Draw one garment picture.

    Args:
        kind: one of GARMENT_KINDS.
        size_px: side of the square picture in pixels (>= 8).
        rng: the random generator that decides colour, pattern, background and jitter.
        pattern: force a pattern from PATTERNS; random when None.
        colour: force the fabric's RGB colour; random when None.

    Returns:
        uint8 array of shape (size_px, size_px, 3), RGB.
    """
    import cv2

    if kind not in _SILHOUETTES:
        raise ValueError(f"unknown garment kind {kind!r}; choose from {', '.join(GARMENT_KINDS)}")
    if size_px < 8:
        raise ValueError(f"size_px must be at least 8, got {size_px}")
    pattern = pattern or PATTERNS[int(rng.integers(len(PATTERNS)))]
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; choose from {', '.join(PATTERNS)}")

    background = rng.integers(200, 256, 3).astype(np.uint8)
    picture = np.empty((size_px, size_px, 3), dtype=np.uint8)
    picture[:] = background

    # Pose jitter: scale, shift and a small rotation about the centre.
    scale = rng.uniform(0.85, 1.05)
    angle = rng.uniform(-0.12, 0.12)
    shift = rng.uniform(-0.05, 0.05, 2)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = (_SILHOUETTES[kind] - 0.5) * scale @ rot.T + 0.5 + shift
    polygon = np.round(points * size_px).astype(np.int32)

    mask = np.zeros((size_px, size_px), dtype=np.uint8)
    cv2.fillPoly(mask, [polygon], 255, lineType=cv2.LINE_AA)
    drawn = rng.integers(0, 200, 3).astype(np.uint8)  # drawn either way: a forced colour keeps the other draws
    colour = drawn if colour is None else np.asarray(colour, dtype=np.uint8)
    fabric = _pattern_layer(size_px, colour, pattern, rng)
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    picture = (fabric * alpha + picture * (1.0 - alpha)).round().astype(np.uint8)
    # A darker outline, as a seam would show.
    cv2.polylines(picture, [polygon], True, tuple(int(c) // 2 for c in colour), max(1, size_px // 96),
                  lineType=cv2.LINE_AA)
    return picture


def write_dataset(
    out_dir: str | Path,
    n_per_class: int,
    size_px: int = 64,
    seed: int = 0,
    kinds: tuple[str, ...] = GARMENT_KINDS,
) -> Path:
    """Write a small dataset in the clothing-small layout: out_dir/<kind>/<kind>-NNNN.png.

    Args:
        out_dir: folder to create (it may exist; files are overwritten).
        n_per_class: pictures per garment kind.
        size_px: side of each square picture.
        seed: seeds the random generator, so the same call writes the same files.
        kinds: which garment kinds to write.

    Returns:
        The dataset folder.
    """
    import cv2

    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    for kind in kinds:
        folder = out / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            rgb = render_garment(kind, size_px, rng)
            if not cv2.imwrite(str(folder / f"{kind}-{i:04d}.png"), rgb[..., ::-1]):
                raise OSError(f"could not write {folder / f'{kind}-{i:04d}.png'}")
    log.info("wrote %d synthetic garments to %s", n_per_class * len(kinds), out)
    return out

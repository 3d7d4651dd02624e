"""Synthetic camera scenes for capture tests, the capture benchmark and demos: a procedural garment held up in
front of a textured backdrop, at a camera's resolution, as BGR frames like OpenCV delivers them."""

from __future__ import annotations

import numpy as np

from edge.procedural_garments import render_garment


def garment_scene(
    kind: str,
    rng: np.random.Generator,
    *,
    width: int = 1920,
    height: int = 1080,
    garment_frac: float = 0.8,
) -> np.ndarray:
    """A BGR frame: a garment (`garment_frac` of the frame height) on a mid-grey backdrop with sensor noise.

    Args:
        kind: a garment kind of `edge.procedural_garments` (t-shirt, dress, trousers).
        rng: decides the garment, its position and the noise.
        width: frame width in pixels.
        height: frame height in pixels.
        garment_frac: garment picture side as a fraction of the frame height.

    Returns:
        (height, width, 3) uint8 BGR.
    """
    import cv2

    side = max(8, int(height * garment_frac))
    garment = render_garment(kind, side, rng)[:, :, ::-1]
    base = np.array([110, 122, 135], np.float32) + rng.uniform(-20, 20, 3).astype(np.float32)
    ramp = np.linspace(-18, 18, width, dtype=np.float32)[None, :, None]
    small = rng.normal(0, 6, (height // 4 + 1, width // 4 + 1, 1)).astype(np.float32)
    noise = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)[..., None]
    frame = np.clip(base + ramp + noise, 0, 255).astype(np.uint8)
    # Held up in front of the camera: centred, give or take a tenth of the frame.
    x = min(max(0, (width - side) // 2 + int(rng.uniform(-0.1, 0.1) * width)), width - side)
    y = (height - side) // 2
    frame[y : y + side, x : x + side] = garment
    return frame


def paste(frame: np.ndarray, picture: np.ndarray, x: int, y: int, height: int) -> tuple[int, int, int, int]:
    """Paste `picture` (BGR) into `frame` in place at (x, y), scaled to `height` pixels tall.

    Returns:
        The pasted box (x, y, w, h).
    """
    import cv2

    h, w = picture.shape[:2]
    width = max(1, round(w * height / h))
    frame[y : y + height, x : x + width] = cv2.resize(picture, (width, height), interpolation=cv2.INTER_AREA)
    return x, y, width, height

"""Reading one training image safely: checks before decoding, conversions, crop/pad and antialiased resize.

Every refusal is an `ImageRejected` with a short reason; conversions (CMYK, 16-bit, grayscale, palette, alpha)
are reported but never skip a file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edge.photo_decode import to_rgb

IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp"})
MIN_SIDE_PX = 32
MAX_PIXELS = 50_000_000  # decompression-bomb guard: refuse larger images without decoding them

# We check the pixel count ourselves before decoding; keep Pillow's own guard above ours so ours speaks first.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS * 4


class ImageRejected(Exception):
    """This file cannot be used for training; str(exc) is the reason."""


@dataclass(frozen=True)
class LoadedImage:
    pixels: np.ndarray  # (size, size, 3) uint8 RGB
    converted_from: str | None  # original mode when it was converted (e.g. "CMYK", "I;16", "RGBA"), else None


def _square(img: Image.Image, crop: str) -> Image.Image:
    w, h = img.size
    side = min(w, h) if crop == "center" else max(w, h)
    if crop == "center":
        left, top = (w - side) // 2, (h - side) // 2
        return img.crop((left, top, left + side, top + side))
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


def load_training_image(path: Path, size_px: int, crop: str = "center") -> LoadedImage:
    """Decode one image file into a size x size RGB array, or raise ImageRejected saying why.

    Args:
        path: the file.
        size_px: output side in pixels.
        crop: "center" (centre square crop) or "pad" (pad to square on white).
    """
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ImageRejected(f"not a supported image type ({path.suffix or 'no extension'}; "
                            f"use {', '.join(sorted(IMAGE_SUFFIXES))})")
    try:
        n_bytes = path.stat().st_size
    except OSError as exc:
        raise ImageRejected(f"cannot read: {exc.strerror or exc}") from exc
    if n_bytes == 0:
        raise ImageRejected("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size  # read from the header; nothing decoded yet
                if w * h > MAX_PIXELS:
                    raise ImageRejected(f"too large: {w}x{h} = {w * h / 1e6:.0f} megapixels "
                                        f"(limit {MAX_PIXELS / 1e6:.0f}; refused without decoding)")
                if min(w, h) < MIN_SIDE_PX:
                    raise ImageRejected(f"too small: {w}x{h} (need at least {MIN_SIDE_PX} px on each side)")
                original_mode = img.mode
                if img.format == "JPEG":
                    # Let libjpeg decode at a reduced scale when the image is much larger than needed.
                    img.draft("RGB", (size_px * 2, size_px * 2))
                img.load()
                img = ImageOps.exif_transpose(img)
                rgb, converted_from = to_rgb(img)
                if original_mode != "RGB":
                    converted_from = original_mode
    except ImageRejected:
        raise
    except UnidentifiedImageError as exc:
        raise ImageRejected("not an image (content is not JPEG, PNG or WebP)") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"corrupt or truncated image: {exc}") from exc
    square = _square(rgb, crop)
    resized = square.resize((size_px, size_px), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return LoadedImage(np.asarray(resized, dtype=np.uint8).copy(), converted_from)

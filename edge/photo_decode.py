"""Decoding a photo someone hands the kiosk (POST /api/inspire), safely: it never trusts the file.

- the body is capped (MAX_PHOTO_BYTES) before it is read in full;
- the format is sniffed from the content, not a name or header: JPEG, PNG or WebP only;
- the pixel count is read from the header and refused above MAX_JPEG_PIXELS / MAX_PHOTO_PIXELS before
  anything is decoded, and
  Pillow's decompression-bomb check is an error, not a warning;
- JPEGs are decoded at a reduced scale when far larger than needed (libjpeg's draft mode);
- EXIF orientation is applied, palette/grey/CMYK/16-bit are converted and transparency lands on white.

Returns a BGR uint8 frame, the same thing a camera delivers, so the photo then takes the one preprocessing path
(`edge.kernels.preprocess_frame`). Nothing is written to disk.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np

from edge.errors import UserError

MAX_PHOTO_BYTES = 8 * 1024 * 1024  # a phone photo is 2-5 MB
# Refused from the header above these (a 50 MP picture always is). JPEGs are decoded at a reduced scale, so a
# large one costs little; a PNG or WebP is decoded in full (16 MP RGBA is 64 MB, a fifth of the kiosk's RSS budget).
MAX_JPEG_PIXELS = 40_000_000
MAX_PHOTO_PIXELS = 16_000_000
MIN_PHOTO_SIDE_PX = 32
FORMATS = ("JPEG", "PNG", "WEBP")
_DRAFT_PX = 512  # JPEGs are decoded at the smallest libjpeg scale that keeps at least this much


class PhotoError(UserError):
    """A photo the kiosk will not decode; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _sniff(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def decode_photo(data: bytes) -> np.ndarray:
    """A JPEG/PNG/WebP file's bytes -> an H x W x 3 uint8 BGR frame.

    Raises:
        PhotoError: 413 for a body or picture that is too large, 415 for something that is not a JPEG, PNG or
            WebP, 400 for a damaged or tiny picture.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if len(data) > MAX_PHOTO_BYTES:
        raise PhotoError(f"the photo is {len(data) / 1e6:.1f} MB; the most is {MAX_PHOTO_BYTES // 2**20} MB", 413)
    if not data:
        raise PhotoError("no photo was sent", 400)
    kind = _sniff(data)
    if kind is None:
        raise PhotoError("that file is not a photo: send a JPEG, PNG or WebP picture", 415)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[kind]) as img:
                w, h = img.size  # from the header: nothing decoded yet
                limit = MAX_JPEG_PIXELS if kind == "JPEG" else MAX_PHOTO_PIXELS
                if w * h > limit:
                    raise PhotoError(f"the photo is {w}x{h} ({w * h / 1e6:.0f} megapixels); the most is "
                                     f"{limit // 1_000_000} megapixels for a {kind}", 413)
                if min(w, h) < MIN_PHOTO_SIDE_PX:
                    raise PhotoError(f"the photo is only {w}x{h} pixels: send a larger picture", 400)
                if kind == "JPEG":
                    img.draft("RGB", (_DRAFT_PX, _DRAFT_PX))
                img.load()
                img = ImageOps.exif_transpose(img)
                rgb, _ = to_rgb(img)
    except PhotoError:
        raise
    except UnidentifiedImageError:
        raise PhotoError("that file is not a photo: send a JPEG, PNG or WebP picture", 415) from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise PhotoError(f"the photo is damaged or cut short ({type(exc).__name__})", 400) from None
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[:, :, ::-1])


def to_rgb(img: Any) -> tuple[Any, str | None]:
    """A decoded PIL image -> (RGB image, the mode it was converted from or None); transparency onto white."""
    from PIL import Image

    mode = img.mode
    if mode == "RGB":
        return img, None
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit int) grayscale: scale the full range down to 8 bits.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr8 = np.clip(np.round(arr * (255.0 / peak)), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(arr8[..., None], 3, axis=2), "RGB"), mode
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr8 = np.clip(np.round(arr * 255.0 if arr.max() <= 1.0 else arr), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(arr8[..., None], 3, axis=2), "RGB"), mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # Composite transparent pixels over white, the colour of a studio backdrop.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB"), mode
    return img.convert("RGB"), mode  # L, P, CMYK, YCbCr, 1, ...

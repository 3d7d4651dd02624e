"""`atelier evaluate --designs DIR|NPZ`: any set of images scored like a model's designs.

Another tool's output, a folder of photos, or a degraded copy of photos (to check the instrument itself) go
through the same loader as the training photos (`trainer.image_files`: EXIF, colour modes, centre crop, Lanczos
resize), so a folder of real photos scores like real photos. Files that cannot be used are skipped and listed with
their reason; images of another size than the evaluation's are resized (and counted); grayscale, palette and
16-bit images are converted (and counted).
"""

from __future__ import annotations

import collections
import logging
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge.errors import UserError
from trainer.image_files import IMAGE_SUFFIXES, MIN_SIDE_PX, ImageRejected, load_training_image
from trainer.image_files import _square as square_crop

log = logging.getLogger(__name__)

NPZ_KEY = "images"  # the array `atelier generate --out X.npz` writes
MAX_SKIPPED_LISTED = 50  # skipped files listed by name in evaluation.json (the count is always exact)


def _header_sizes(files: list[Path]) -> dict[Path, tuple[int, int]]:
    """Each readable image's (width, height) from its header; unreadable files are left out (the loader says why)."""
    sizes: dict[Path, tuple[int, int]] = {}
    for path in files:
        try:
            with Image.open(path) as img:
                sizes[path] = img.size
        except Exception:  # the loader reports each unreadable file with its reason
            continue
    return sizes


def _load_folder(folder: Path, size_px: int | None) -> tuple[np.ndarray, dict[str, Any]]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise UserError(f"--designs {folder} is an empty folder: give a folder of PNG/JPEG/WebP images or a .npz")
    sizes = _header_sizes([p for p in files if p.suffix.lower() in IMAGE_SUFFIXES])
    # The evaluation's side: --size, else the most common short side of the images.
    side = size_px or (collections.Counter(min(wh) for wh in sizes.values()).most_common(1)[0][0] if sizes else None)
    if side is None:
        raise UserError(f"--designs {folder}: none of its {len(files)} files is a readable image "
                        f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    images, skipped, converted, resized = [], [], 0, 0
    for path in files:
        try:
            loaded = load_training_image(path, side)
        except ImageRejected as exc:
            skipped.append({"path": str(path), "reason": str(exc)})
            log.warning("skipping %s: %s", path, exc)
            continue
        resized += int(sizes.get(path) != (side, side))
        converted += int(loaded.converted_from is not None)
        images.append(loaded.pixels)
    report = {"files": len(files), "used": len(images), "skipped_count": len(skipped),
              "skipped": skipped[:MAX_SKIPPED_LISTED], "converted_to_rgb": converted, "resized": resized}
    return (np.stack(images) if images else np.zeros((0, side, side, 3), np.uint8)), report


def _load_npz(path: Path, size_px: int | None) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.keys())
            if not keys:
                raise UserError(f"--designs {path} holds no arrays")
            key = NPZ_KEY if NPZ_KEY in keys else keys[0]
            images = data[key]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"--designs {path} is not a readable .npz file ({exc})") from exc
    if images.ndim == 3:  # grayscale (N, H, W)
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise UserError(f"--designs {path}: array {key!r} has shape {images.shape}; expected (N, H, W, 3) RGB "
                        "(or (N, H, W) grayscale)")
    if images.dtype != np.uint8:
        raise UserError(f"--designs {path}: array {key!r} is {images.dtype}; expected uint8 pixels 0..255 "
                        "(as `atelier generate --out X.npz` writes)")
    converted = 0
    if images.shape[-1] == 1:
        images, converted = np.repeat(images, 3, axis=-1), len(images)
    h, w = images.shape[1:3]
    if min(h, w) < MIN_SIDE_PX:
        raise UserError(f"--designs {path}: the images are {w}x{h} px, too small to measure (at least "
                        f"{MIN_SIDE_PX} px a side)")
    side = size_px or min(h, w)
    resized = 0
    if (h, w) != (side, side):
        out = np.empty((len(images), side, side, 3), np.uint8)
        for i, img in enumerate(images):  # the photos' own square crop, then Lanczos
            square = square_crop(Image.fromarray(img), "center")
            out[i] = np.asarray(square.resize((side, side), Image.Resampling.LANCZOS))
        images, resized = out, len(images)
    report = {"files": 1, "array": key, "used": len(images), "skipped_count": 0, "skipped": [],
              "converted_to_rgb": converted, "resized": resized}
    return np.ascontiguousarray(images), report


def load_design_images(path: str | Path, size_px: int | None = None, min_images: int = 4) -> tuple[np.ndarray, dict]:
    """Images to score as designs, from a folder of images or a .npz file.

    Args:
        path: a folder (searched recursively) or a .npz with a uint8 (N, H, W, 3) array ("images" or the first).
        size_px: the side to evaluate at (default: the most common side of the images).
        min_images: the fewest usable images.

    Returns:
        (uint8 (N, size, size, 3) images, a report of what was used, skipped, converted and resized).

    Raises:
        UserError: the path is missing, empty, unreadable, or has fewer than `min_images` usable images.
    """
    path = Path(path)
    if size_px is not None and size_px < MIN_SIDE_PX:
        raise UserError(f"--size must be at least {MIN_SIDE_PX} px, got {size_px}")
    if path.is_dir():
        images, report = _load_folder(path, size_px)
    elif path.is_file() and path.suffix.lower() == ".npz":
        images, report = _load_npz(path, size_px)
    elif path.is_file():
        raise UserError(f"--designs {path} is a file but not a .npz: give a folder of images or a .npz file")
    else:
        raise UserError(f"--designs {path} does not exist")
    if len(images) < min_images:
        reasons = "; ".join(f"{Path(s['path']).name}: {s['reason']}" for s in report["skipped"][:5])
        raise UserError(f"--designs {path}: only {len(images)} usable images (need at least {min_images})"
                        + (f"; skipped {reasons}" if reasons else ""))
    if report["skipped_count"]:
        log.warning("--designs %s: skipped %d of %d files (listed in evaluation.json)", path,
                    report["skipped_count"], report["files"])
    return images, {"kind": "images", "path": str(path), "size_px": int(images.shape[1]), **report}

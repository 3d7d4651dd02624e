"""The camera preview picture, as a JPEG: for staff, the live frame beside the model-input crop (what the model
sees); for a shopper ("Design from my garment"), the live frame alone, larger (the page draws its framing guide)."""

from __future__ import annotations

import numpy as np

from edge.kiosk.camera import Frame

PREVIEW_HEIGHT_PX = 240
LIVE_HEIGHT_PX = 480  # the shopper's live view is shown large
VIEWS: tuple[str, ...] = ("staff", "live")


def preview_jpeg(frame: Frame, quality: int = 80, view: str = "staff") -> bytes:
    """The preview of `view` ("staff": the live frame beside the model-input crop; "live": the frame alone)."""
    import cv2

    from edge.kernels import postprocess, upscale

    h, w = frame.bgr.shape[:2]
    height = min(h, LIVE_HEIGHT_PX) if view == "live" else PREVIEW_HEIGHT_PX
    live = cv2.resize(frame.bgr, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)
    if view == "live":
        ok, buf = cv2.imencode(".jpg", live, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return buf.tobytes()
    crop_rgb = postprocess(frame.model_input[None])[0]
    factor = max(1, PREVIEW_HEIGHT_PX // crop_rgb.shape[0])
    crop = upscale(crop_rgb, factor, mode="nearest")[:, :, ::-1]
    panel = np.full((PREVIEW_HEIGHT_PX, crop.shape[1], 3), 32, dtype=np.uint8)
    top = (PREVIEW_HEIGHT_PX - crop.shape[0]) // 2
    panel[top : top + crop.shape[0]] = crop[:PREVIEW_HEIGHT_PX]
    ok, buf = cv2.imencode(".jpg", np.hstack([live, panel]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()

"""The camera preview picture: the live frame beside the model-input crop (what the model sees), as a JPEG."""

from __future__ import annotations

import numpy as np

from edge.kiosk.camera import Frame

PREVIEW_HEIGHT_PX = 240


def preview_jpeg(frame: Frame, quality: int = 80) -> bytes:
    """The live frame beside the model-input crop (what the model would see), as one JPEG."""
    import cv2

    from edge.kernels import postprocess, upscale

    h, w = frame.bgr.shape[:2]
    live = cv2.resize(frame.bgr, (max(1, round(w * PREVIEW_HEIGHT_PX / h)), PREVIEW_HEIGHT_PX),
                      interpolation=cv2.INTER_AREA)
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

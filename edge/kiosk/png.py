"""Design pictures as PNG: encoding and decoding (OpenCV), and the bounded cache of encoded designs by ID."""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict

import numpy as np


@functools.cache  # made once per kind: encode_png runs for every design served
def _png_params(compress: bool) -> tuple[int, ...]:
    import cv2

    if not compress:
        # Stored deflate blocks, no filter: 0.05 ms for a 128 px design against 0.43 ms for the fastest real
        # compression (Huffman-only, "up" filter), at 49 KB instead of 25 KB. The page is served over loopback,
        # where bytes are free and the CPU is what the shoppers wait for.
        params = [cv2.IMWRITE_PNG_COMPRESSION, 0]
        if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.10
            params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
        return tuple(params)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    return tuple(params)


def encode_png(rgb: np.ndarray, *, compress: bool = False) -> bytes:
    """uint8 RGB (H, W, 3) -> PNG bytes (OpenCV). Uncompressed for the screen; `compress` for files people keep."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]), _png_params(compress))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def encode_each(images: np.ndarray) -> list[bytes]:
    """Each picture of a (n, H, W, 3) batch as uncompressed PNG (runs in a worker thread as a job's `post`)."""
    return [encode_png(im) for im in images]


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 RGB (H, W, 3)."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[:, :, ::-1])


class PngCache:
    """A bounded LRU of encoded design pictures by design ID (thread-safe)."""

    def __init__(self, max_items: int) -> None:
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._max = max_items
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        """The cached bytes for `key` (marking it recently used), or None."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: bytes) -> None:
        """Store `value`, evicting the least recently used items beyond the limit."""
        if self._max <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget everything (tests use it to force regeneration)."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

"""A learned 2x upscaler for the kiosk's large designs (`atelier train-upscaler`): 128 px design -> 256 px.

Designs are shown at 230-700 px; a bilinear enlargement of a 128 px design is soft. The upscaler is small and
runs on the Edge TPU op set: bilinear 2x (RESIZE_BILINEAR), then three 3x3 convs at the output size (ReLU, ReLU,
linear) whose output is *added* to the bilinear picture, so it learns only the detail bilinear loses; the last conv
starts at zero (the untrained upscaler is exactly bilinear). 0.21 GMAC per 128 px design (width 16): the design
(0.35-0.58 GMAC) and its enlargement stay within the 1.5 GMAC of the 256 px path.

Trained on the photos, not on designs (the issue's recipe, and what a design should look like enlarged): each
step takes random crops of photos at twice the bundle's size as targets, their 2x2 area means as inputs, L1 loss.
Measured on the held-out photos against the C++ bilinear `upscale` kernel the kiosk used before: PSNR to the true
photo and sharpness (mean absolute gradient, the true photo's for reference).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edge.errors import UserError

log = logging.getLogger(__name__)

UPSCALER_FILE = "upscaler_b1.tflite"
MAX_MACS = 400_000_000  # per 128 px design: with a 0.58 GMAC generator the 256 px path stays under 1.5 GMAC
FACTOR = 2


@dataclass
class UpscalerTrainConfig:
    steps: int = 1500
    batch_size: int = 16
    crop_px: int = 128  # side of the training crops at the output size (fully convolutional: any input size works)
    width: int = 16  # channels of the two hidden convs
    lr: float = 1e-3
    seed: int = 0

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise UserError(f"--steps and --batch-size must be at least 1, got {self.steps} and {self.batch_size}")
        if self.crop_px < 8 or self.crop_px % 2:
            raise UserError(f"the crop must be an even number of pixels >= 8, got {self.crop_px}")
        if not 1 <= self.width <= 64:
            raise UserError(f"--width must be between 1 and 64, got {self.width}")
        if not self.lr > 0:
            raise UserError(f"--lr must be positive, got {self.lr}")


def build_upscaler(size_px: int, width: int = 16) -> Any:
    """The float Keras upscaler: image (size, size, 3) in [-1, 1] -> (2 size, 2 size, 3), about [-1, 1]."""
    import keras
    from keras import layers

    image = keras.Input((size_px, size_px, 3), name="image")
    up = layers.UpSampling2D(FACTOR, interpolation="bilinear", name="bilinear")(image)
    h = layers.Conv2D(width, 3, padding="same", activation="relu", name="detail1")(up)
    h = layers.Conv2D(width, 3, padding="same", activation="relu", name="detail2")(h)
    h = layers.Conv2D(3, 3, padding="same", kernel_initializer="zeros", name="detail_rgb")(h)
    out = layers.Add(name="enlarged")([up, h])
    return keras.Model(image, out, name="upscaler")


def upscaler_macs(model: Any) -> int:
    """Multiply-accumulates of one picture (the convs; the resize and the add are not MACs)."""
    from keras import layers

    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw, c_in, _ = layer.kernel.shape
            total += int(h * w * c_out * kh * kw * c_in)
    return total


def area_half(images: np.ndarray) -> np.ndarray:
    """(n, 2s, 2s, 3) -> (n, s, s, 3) float32 2x2 means: a picture as a design of half the size would be."""
    n, h, w, c = images.shape
    return images.astype(np.float32).reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def train_upscaler(photos: np.ndarray, size_px: int, cfg: UpscalerTrainConfig,
                   progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """Train on photos (n, 2 size, 2 size, 3) uint8; returns (model, training report)."""
    import tensorflow as tf
    from keras import optimizers
    from tqdm import tqdm

    cfg.validate()
    big = FACTOR * size_px
    if photos.ndim != 4 or photos.shape[1:] != (big, big, 3):
        raise UserError(f"the upscaler trains on {big} px photos, got {photos.shape[1:]}")
    crop = min(cfg.crop_px, big)
    tf.keras.utils.set_random_seed(cfg.seed)
    model = build_upscaler(size_px, cfg.width)
    train_model = build_upscaler(crop // FACTOR, cfg.width)  # the same weights on crops
    opt = optimizers.Adam(cfg.lr)

    @tf.function
    def step(small: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(train_model(small, training=True) - target))
        grads = tape.gradient(loss, train_model.trainable_variables)
        opt.apply_gradients(zip(grads, train_model.trainable_variables, strict=True))
        return loss

    rng = np.random.default_rng(cfg.seed)
    losses: list[float] = []
    bar = tqdm(range(cfg.steps), desc="upscaler", unit="step", disable=not progress, leave=False)
    for _ in bar:
        idx = rng.integers(0, len(photos), cfg.batch_size)
        y0, x0 = (int(v) // 2 * 2 for v in rng.integers(0, big - crop + 1, 2))
        target = photos[idx, y0 : y0 + crop, x0 : x0 + crop].astype(np.float32) / 127.5 - 1.0
        flip = rng.random(cfg.batch_size) < 0.5
        target[flip] = target[flip, :, ::-1]
        loss = float(step(tf.constant(area_half(target)), tf.constant(target)))
        if not np.isfinite(loss):
            raise UserError("the upscaler's loss is not finite: lower --lr")
        losses.append(loss)
        bar.set_postfix(l1=f"{np.mean(losses[-50:]):.4f}")
    model.set_weights(train_model.get_weights())
    report = {"config": asdict(cfg), "photos": len(photos), "l1_first_50": round(float(np.mean(losses[:50])), 5),
              "l1_last_50": round(float(np.mean(losses[-50:])), 5)}
    log.info("upscaler trained: %d steps, L1 %.4f -> %.4f", cfg.steps, report["l1_first_50"], report["l1_last_50"])
    return model, report


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """Mean PSNR (dB) of uint8 picture pairs."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(axis=1)
    return float(np.mean(10.0 * np.log10(255.0**2 / np.maximum(mse, 1e-10))))


def sharpness(images: np.ndarray) -> float:
    """Mean absolute horizontal and vertical pixel difference (0-255 units): what a blur takes away."""
    x = images.astype(np.float32)
    return float(np.abs(np.diff(x, axis=1)).mean() + np.abs(np.diff(x, axis=2)).mean()) / 2.0


def compare_with_bilinear(enlarge: Any, photos: np.ndarray) -> dict[str, Any]:
    """`enlarge` (uint8 (n, s, s, 3) -> (n, 2s, 2s, 3)) against the bilinear `upscale` kernel on held-out photos
    (n, 2s, 2s, 3) uint8, each shrunk to s by area means first."""
    from edge.kernels import upscale

    small = np.clip(np.rint(area_half(photos)), 0, 255).astype(np.uint8)
    ours = enlarge(small)
    bilinear = np.stack([upscale(p, FACTOR, mode="bilinear") for p in small])
    return {
        "n_photos": len(photos),
        "psnr_db": {"ours": round(psnr_db(ours, photos), 2), "bilinear": round(psnr_db(bilinear, photos), 2)},
        "sharpness": {"ours": round(sharpness(ours), 3), "bilinear": round(sharpness(bilinear), 3),
                      "photos": round(sharpness(photos), 3)},
    }

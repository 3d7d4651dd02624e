"""The inspire encoder E: a garment photo -> a latent of one generator (+ class logits for a conditional one).

Edge TPU friendly by construction: 3x3 stride-2 convs with BatchNorm (folded at export) and ReLU (no LeakyReLU,
no transposed conv), a flatten and two dense layers; static shapes, batch 1 at export. Widths scale with nothing
but the generator's z_dim and size, so one builder serves every generator (z_dim, size_px, conditional):

    size_px -> size/2 (c0) -> size/4 (2 c0, + a stride-1 conv) -> size/8 (4 c0, + one) -> ... -> 4 x 4
    flatten -> dense HIDDEN (ReLU) -> z (linear, z_dim) [-> class logits (linear)]

Input: float RGB in [-1, 1] (what `edge.kernels.preprocess_frame` returns; int8 at export with the input's
scale and zero point). About 0.1 GMAC at 128 px (`encoder_macs`), within the 0.3 GMAC budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ENCODER_FILE = "encoder_b1.tflite"
KERAS_FILE = "encoder.keras"
MAX_MACS = 300_000_000  # the budget per photo
HIDDEN = 256  # width of the dense layer before the latent head


@dataclass(frozen=True)
class EncoderSpec:
    """What an encoder is built for: its generator's size, latent length and classes."""

    size_px: int
    z_dim: int
    n_classes: int = 0  # 0: unconditional generator, no class head
    base_channels: int = 24  # c0, the first block's width

    def to_json(self) -> dict[str, Any]:
        return {"size_px": self.size_px, "z_dim": self.z_dim, "n_classes": self.n_classes,
                "base_channels": self.base_channels}


def _widths(spec: EncoderSpec) -> list[int]:
    """Channels of each stride-2 block, from size/2 down to 4 px (doubling, capped at 256)."""
    out, side, c = [], spec.size_px // 2, spec.base_channels
    while side >= 4:
        out.append(min(c, 256))
        side //= 2
        c *= 2
    return out


def build_encoder(spec: EncoderSpec, name: str = "encoder") -> Any:
    """The encoder as a Keras functional model: input "image" (size, size, 3) in [-1, 1]; outputs "z"
    (and "class_logits" when `spec.n_classes`)."""
    import keras
    from keras import layers

    def block(x, filters: int, strides: int, tag: str):
        x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"conv_{tag}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"bn_{tag}")(x)
        return layers.ReLU(name=f"relu_{tag}")(x)

    image = keras.Input((spec.size_px, spec.size_px, 3), name="image")
    x = image
    side = spec.size_px
    for i, width in enumerate(_widths(spec)):
        side //= 2
        x = block(x, width, 2, f"{side}")
        if 0 < i < 3:  # one more conv at the middle resolutions, where it is cheap and sees garment shape
            x = block(x, width, 1, f"{side}b")
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(HIDDEN, name="hidden")(x)
    x = layers.ReLU(name="relu_hidden")(x)
    outputs = {"z": layers.Dense(spec.z_dim, name="z")(x)}
    if spec.n_classes:
        outputs["class_logits"] = layers.Dense(spec.n_classes, name="class_logits")(x)
    return keras.Model(image, outputs, name=name)


def encoder_macs(model: Any) -> int:
    """Multiply-accumulates of one encoder pass (dense and conv layers), per photo."""
    from trainer.networks import generator_macs

    return generator_macs(model)  # counts Dense and Conv2D layers of any functional model


def output_names(spec: EncoderSpec) -> list[str]:
    """The encoder's outputs in manifest order: z first."""
    return ["z", "class_logits"] if spec.n_classes else ["z"]

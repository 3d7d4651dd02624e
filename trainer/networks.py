"""Generator and discriminator builders for the three presets.

- seed: gsurma/image_generator's DCGAN as the paper trained it (dense to 8x8x1024, 5x5 stride-2 transposed convs,
  BatchNorm eps 5e-5, LeakyReLU; D of 5x5 convs with BatchNorm), truncated-normal init std 0.02.
- edge / tiny: ours. G = dense projection to 4x4, then (nearest upsample, 3x3 conv, BatchNorm, ReLU) blocks — the
  Edge TPU has no LeakyReLU and maps stride-2 TRANSPOSE_CONV badly, and Conv2D+BatchNorm folds at export.
  D = spectrally normalised 4x4 stride-2 convs with LeakyReLU (D never runs on the kiosk).
- conditional: G gets a one-hot class vector concatenated to z (a learned label embedding inside the first dense
  layer); D is a projection discriminator (Miyato & Koyama 2018): logit = psi(h) + <embed(y), h>. With
  `aux_class_weight` D has a second output, class logits from the same features (AC-GAN, Odena et al. 2017).
"""

from __future__ import annotations

import keras
from keras import layers

from trainer.config import TrainConfig, g_resolutions, g_start_px
from trainer.spectral_norm import SNConv2D, SNDense


def _seed_init():
    return keras.initializers.TruncatedNormal(stddev=0.02)


def _n_classes(cfg: TrainConfig) -> int:
    return len(cfg.class_names or [])


def generator_inputs(cfg: TrainConfig) -> list[keras.KerasTensor]:
    """The generator's inputs: z, plus a one-hot class vector when conditional."""
    inputs = [keras.Input((cfg.z_dim,), name="z")]
    if cfg.conditional:
        inputs.append(keras.Input((_n_classes(cfg),), name="class_onehot"))
    return inputs


def build_generator(cfg: TrainConfig, name: str = "generator") -> keras.Model:
    """The generator for `cfg`: inputs as `generator_inputs`, output (B, size, size, 3) tanh in [-1, 1]."""
    inputs = generator_inputs(cfg)
    h = layers.Concatenate(name="z_and_class")(inputs) if cfg.conditional else inputs[0]
    resolutions = g_resolutions(cfg)
    start = g_start_px(cfg)
    c0 = cfg.g_channels[start]
    if cfg.preset == "seed":
        init = _seed_init()
        h = layers.Dense(start * start * c0, kernel_initializer=init, name="project")(h)
        h = layers.Reshape((start, start, c0))(h)
        h = layers.LeakyReLU(0.2)(h)
        for res in resolutions[1:]:
            h = layers.Conv2DTranspose(cfg.g_channels[res], 5,
                                       strides=2, padding="same", kernel_initializer=init, name=f"up{res}")(h)
            h = layers.BatchNormalization(momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon, name=f"bn{res}")(h)
            h = layers.LeakyReLU(0.2)(h)
        h = layers.Conv2DTranspose(3, 5, strides=1, padding="same", kernel_initializer=init, name="to_rgb")(h)
    else:
        h = layers.Dense(start * start * c0, use_bias=False, name="project")(h)
        h = layers.BatchNormalization(momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon, name="bn_project")(h)
        h = layers.ReLU()(h)
        h = layers.Reshape((start, start, c0))(h)
        maps = {start: h}
        for res in resolutions[1:]:
            h = layers.UpSampling2D(2, interpolation=cfg.upsample, name=f"up{res}")(h)
            h = layers.Conv2D(cfg.g_channels[res], 3, padding="same", use_bias=False, name=f"conv{res}")(h)
            h = layers.BatchNormalization(momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon, name=f"bn{res}")(h)
            h = layers.ReLU()(h)
            source = res // SLE_SPAN
            if cfg.skip_excitation and res >= 64 and source in maps:
                h = _skip_excitation(maps[source], h, name=f"sle{source}_{res}")
            maps[res] = h
        h = layers.Conv2D(3, 3, padding="same", name="to_rgb")(h)
    # tanh in float32 even under mixed precision.
    out = layers.Activation("tanh", dtype="float32", name="tanh")(h)
    return keras.Model(inputs, out, name=name)


SLE_SPAN = 8  # skip-layer excitation reaches from a map to the one 8x its side (FastGAN: 8 -> 64, 16 -> 128)


def _skip_excitation(low: keras.KerasTensor, high: keras.KerasTensor, name: str) -> keras.KerasTensor:
    """FastGAN's skip-layer excitation: channel gates from the low-resolution map scale the high-resolution one."""
    c_low, c_high = int(low.shape[-1]), int(high.shape[-1])
    g = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(low)
    g = layers.Conv2D(max(8, c_low // 4), 1, activation="relu", name=f"{name}_squeeze")(g)
    g = layers.Conv2D(c_high, 1, activation="sigmoid", name=f"{name}_gate")(g)
    return layers.Multiply(name=f"{name}_excite")([high, g])


def build_discriminator(cfg: TrainConfig, name: str = "discriminator") -> keras.Model:
    """The discriminator: inputs image (and class id when conditional), output one logit per image.

    With `cfg.aux_class_weight` > 0 the outputs are [logit, class logits (B, n_classes)].
    """
    image = keras.Input((cfg.size_px, cfg.size_px, 3), name="image")
    inputs = [image]
    if cfg.preset == "seed":
        init = _seed_init()
        h = image
        # 5x5 convs 64, 128, 256 (stride 2), 512 (stride 1), 1024 (stride 2); BatchNorm after all but the first.
        plan = [(cfg.d_channels[cfg.size_px // 2], 2, False), (cfg.d_channels[cfg.size_px // 4], 2, True),
                (cfg.d_channels[cfg.size_px // 8], 2, True), (512, 1, True),
                (cfg.d_channels[cfg.size_px // 16], 2, True)]
        for i, (filters, stride, bn) in enumerate(plan):
            h = layers.Conv2D(filters, 5, strides=stride, padding="same", kernel_initializer=init,
                              name=f"conv{i}")(h)
            if bn:
                h = layers.BatchNormalization(momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon, name=f"bn{i}")(h)
            h = layers.LeakyReLU(0.2)(h)
        features = layers.Flatten()(h)
        logit = layers.Dense(1, kernel_initializer=init, name="logit")(features)
    else:
        h = image
        res = cfg.size_px // 2
        while res >= 4:
            conv = SNConv2D if cfg.spectral_norm else _PlainConv
            h = conv(cfg.d_channels[res], 4, strides=2, name=f"conv{res}")(h)
            h = layers.LeakyReLU(0.2)(h)
            res //= 2
        features = layers.Flatten()(h)
        dense = SNDense if cfg.spectral_norm else layers.Dense
        logit = dense(1, name="logit")(features)
    if cfg.conditional:
        # Projection: add <embed(y), features> to the unconditional logit.
        class_id = keras.Input((), dtype="int32", name="class_id")
        inputs.append(class_id)
        embed = layers.Embedding(_n_classes(cfg), features.shape[-1], name="class_embed")(class_id)
        projection = layers.Dot(axes=1, name="projection")([embed, features])
        logit = layers.Add(name="logit_conditional")([logit, projection])
        if cfg.aux_class_weight > 0:
            # A plain dense head: a spectrally normalised one bounds the logits and cannot grow confident.
            class_logits = layers.Dense(_n_classes(cfg), dtype="float32", name="class_logits")(features)
            return keras.Model(inputs, [logit, class_logits], name=name)
    return keras.Model(inputs, logit, name=name)


def _PlainConv(filters: int, kernel_size: int, strides: int, name: str) -> layers.Layer:  # noqa: N802
    return layers.Conv2D(filters, kernel_size, strides=strides, padding="same", name=name)


def generator_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one generator forward pass (dense and conv layers; per design, batch 1)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Dense):
            total += int(layer.kernel.shape[0] * layer.kernel.shape[1])
        elif isinstance(layer, layers.Conv2DTranspose):
            k = layer.kernel  # (kh, kw, out, in)
            in_h, in_w = layer.input.shape[1], layer.input.shape[2]
            total += int(in_h * in_w * k.shape[0] * k.shape[1] * k.shape[2] * k.shape[3])
        elif isinstance(layer, layers.Conv2D):
            k = layer.kernel  # (kh, kw, in, out)
            out_h, out_w = layer.output.shape[1], layer.output.shape[2]
            total += int(out_h * out_w * k.shape[0] * k.shape[1] * k.shape[2] * k.shape[3])
    return total

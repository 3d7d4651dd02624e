"""Training the inspire encoder E for one generator G (G frozen, float, inference mode).

The encoder's raw output u is projected onto the prior's typical set before G sees it (`to_prior`; the kiosk does
the same, `edge.inspire.project_to_prior`): for N(0, I) z = sqrt(z_dim) u / |u|, the sphere nearly all prior
latents lie near; for U(-1, 1) z = tanh(u). Without it a regression to z learns to answer near the prior's mean
when unsure, and G(mean) is a blurred average t-shirt (measured here: latents of norm 0.26 sqrt(z_dim) after
800 steps, reconstructions all the same grey blur).

Stage 1, generated pairs: z from G's prior (and a class for a conditional G), x = camera_like(G(z)); the loss is
the latent error 1 - cos(E(x), z) plus the picture error |G(E(x)) - G(z)| (the latent error alone weighs every
direction of z alike; the picture error weighs them by what they change on screen) and, for a conditional G, the
class cross-entropy.

Stage 2, real photos: every step also takes a batch of the generator's training photos (flipped, mildly
recoloured) and adds the reconstruction loss |G(E(x)) - x| in pixels plus the squared distance between the
garment network's features (`trainer.features`) of G(E(x)) and of x, scaled by the photos' feature energy. The
generated-pair loss stays on, so E does not drift off G's own pictures.

Everything runs in one `tf.function` step; every random draw is stateless in (seed, step).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import UserError
from trainer.encoder import EncoderSpec, build_encoder, encoder_macs
from trainer.generator_source import GeneratorSource

log = logging.getLogger(__name__)


@dataclass
class EncoderTrainConfig:
    """How `atelier train-encoder` trains (steps are small on purpose: minutes on a CPU)."""

    synthetic_steps: int = 300  # stage 1 steps on generated pairs
    real_steps: int = 200  # stage 2 steps on generated pairs + real photos
    batch_size: int = 24  # generated pictures per step (and as many real photos in stage 2)
    lr: float = 1e-3  # Adam learning rate (cosine-decayed to 5 % over both stages)
    pixel_weight: float = 1.0  # weight of the picture L1 losses
    feature_weight: float = 1.0  # weight of the real photos' feature loss
    class_weight: float = 0.5  # weight of the class cross-entropy (conditional only)
    seed: int = 0

    def validate(self) -> None:
        if self.synthetic_steps < 1 or self.real_steps < 0 or self.batch_size < 2:
            raise UserError("--synthetic-steps must be >= 1, --real-steps >= 0 and --batch-size >= 2")
        if not self.lr > 0:
            raise UserError(f"--lr must be positive, got {self.lr}")


@dataclass
class TrainedEncoder:
    """A trained float encoder and how it got there."""

    model: Any  # keras.Model (see trainer.encoder.build_encoder)
    spec: EncoderSpec
    config: EncoderTrainConfig
    history: list[dict[str, float]]  # one row per logged step
    wall_s: float
    n_real: int

    def report(self) -> dict[str, Any]:
        return {"spec": self.spec.to_json(), "config": asdict(self.config), "macs": encoder_macs(self.model),
                "params": int(self.model.count_params()), "wall_s": round(self.wall_s, 1),
                "n_real_photos": self.n_real, "final": self.history[-1] if self.history else None}


def to_prior(tf, u, distribution: str):
    """The encoder's raw output -> a latent on the prior's typical set (the kiosk's project_to_prior, in TF)."""
    if distribution == "uniform":
        return tf.tanh(u)
    dim = tf.cast(tf.shape(u)[-1], u.dtype)
    return u * tf.sqrt(dim) / (tf.norm(u, axis=-1, keepdims=True) + 1e-6)


def _prior(tf, n: int, z_dim: int, distribution: str, seed) -> Any:
    if distribution == "uniform":
        return tf.random.stateless_uniform((n, z_dim), seed=seed, minval=-1.0, maxval=1.0)
    return tf.random.stateless_normal((n, z_dim), seed=seed)


def train_encoder(source: GeneratorSource, real: np.ndarray | None, real_labels: np.ndarray | None,
                  cfg: EncoderTrainConfig | None = None, *, features_model: Any = None,
                  progress: bool = True) -> TrainedEncoder:
    """Train an encoder for `source`'s generator.

    Args:
        source: the float generator (frozen).
        real: uint8 training photos (N, size, size, 3) for stage 2, or None to skip it.
        real_labels: class index of each photo in the generator's class list (conditional generators).
        cfg: steps, batch, learning rate and loss weights.
        features_model: the garment feature network as a Keras model RGB 0..255 -> features (stage 2).
        progress: show a progress bar.
    """
    import keras
    import tensorflow as tf
    from tqdm import tqdm

    from trainer.encoder_augment import camera_like, photometric

    cfg = cfg or EncoderTrainConfig()
    cfg.validate()
    if real is not None and (real.ndim != 4 or real.shape[1:] != (source.size_px, source.size_px, 3)):
        raise UserError(f"real photos must be {source.size_px} px RGB, got {real.shape}")
    stage2 = real is not None and cfg.real_steps > 0 and len(real) >= cfg.batch_size
    if real is not None and cfg.real_steps > 0 and not stage2:
        raise UserError(f"only {len(real)} real photos: need at least --batch-size {cfg.batch_size} for stage 2")
    n_classes = len(source.class_names or [])
    spec = EncoderSpec(source.size_px, source.z_dim, n_classes)
    keras.utils.set_random_seed(cfg.seed)
    encoder = build_encoder(spec)
    generator = source.model
    generator.trainable = False
    total = cfg.synthetic_steps + (cfg.real_steps if stage2 else 0)
    schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, total, alpha=0.05)
    optimizer = keras.optimizers.Adam(schedule)
    b, z_dim = cfg.batch_size, source.z_dim
    real_t = tf.constant(real) if stage2 else None
    labels_t = None
    if stage2:
        labels = real_labels if real_labels is not None else np.zeros(len(real), np.int32)
        labels_t = tf.constant(labels, tf.int32)

    def g(z, ids):
        feed = {"z": z}
        if n_classes:
            feed["class_onehot"] = tf.one_hot(ids, n_classes)
        return generator(feed, training=False)

    def enc(x):
        out = encoder(x, training=True)
        return to_prior(tf, out["z"], source.z_distribution), out.get("class_logits")

    def class_loss(logits, ids):
        return tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(ids, logits, from_logits=True))

    @tf.function  # traced twice: with_real is a Python bool (stage 1, stage 2)
    def step(step_i, with_real: bool):
        seeds = tf.random.experimental.stateless_split(tf.stack([tf.cast(cfg.seed, tf.int64), step_i]), 6)
        z = _prior(tf, b, z_dim, source.z_distribution, seeds[0])
        ids = tf.random.stateless_uniform((b,), seeds[1], 0, max(n_classes, 1), dtype=tf.int32)
        target = g(z, ids)
        x = camera_like(target, seeds[2])
        logs = {}
        with tf.GradientTape() as tape:
            z_hat, logits = enc(x)
            latent = 1.0 - tf.reduce_mean(tf.reduce_sum(z_hat * z, axis=1) / (
                tf.norm(z_hat, axis=1) * tf.norm(z, axis=1) + 1e-6))
            picture = tf.reduce_mean(tf.abs(g(z_hat, ids) - target))
            loss = latent + cfg.pixel_weight * picture
            logs.update(latent=latent, picture=picture)
            if n_classes:
                logs["cls"] = class_loss(logits, ids)
                loss += cfg.class_weight * logs["cls"]
            if with_real:
                pick = tf.random.stateless_uniform((b,), seeds[3], 0, tf.shape(real_t)[0], dtype=tf.int32)
                photo = tf.cast(tf.gather(real_t, pick), tf.float32) / 127.5 - 1.0
                flip = tf.random.stateless_uniform((b, 1, 1, 1), seeds[4]) < 0.5
                photo = tf.where(flip, tf.reverse(photo, axis=[2]), photo)
                seen = photometric(photo, seeds[5])
                r_hat, r_logits = enc(seen)
                r_ids = tf.gather(labels_t, pick)
                recon = g(r_hat, r_ids)
                recon_px = tf.reduce_mean(tf.abs(recon - photo))
                f_photo = features_model((photo + 1.0) * 127.5, training=False)
                f_recon = features_model((recon + 1.0) * 127.5, training=False)
                energy = tf.stop_gradient(tf.reduce_mean(tf.square(f_photo))) + 1e-6
                feat = tf.reduce_mean(tf.square(f_recon - f_photo)) / energy
                loss += cfg.pixel_weight * recon_px + cfg.feature_weight * feat
                logs.update(real_px=recon_px, real_feat=feat)
                if n_classes:
                    logs["real_cls"] = class_loss(r_logits, r_ids)
                    loss += cfg.class_weight * logs["real_cls"]
        grads = tape.gradient(loss, encoder.trainable_variables)
        optimizer.apply_gradients(zip(grads, encoder.trainable_variables, strict=True))
        logs["loss"] = loss
        return logs

    history: list[dict[str, float]] = []
    start = time.monotonic()
    bar = tqdm(range(total), desc="train encoder", unit="step", disable=not progress, leave=False)
    for i in bar:
        with_real = stage2 and i >= cfg.synthetic_steps
        logs = {k: float(v) for k, v in step(tf.constant(i, tf.int64), with_real).items()}
        if not np.isfinite(logs["loss"]):
            raise UserError(f"the encoder's loss became {logs['loss']} at step {i}: try a smaller --lr")
        if i % 25 == 0 or i == total - 1:
            log.info("encoder step %d/%d: %s", i, total, {k: round(v, 4) for k, v in logs.items()})
            history.append({"step": i, "stage": 2 if with_real else 1, **{k: round(v, 5) for k, v in logs.items()}})
            bar.set_postfix(loss=f"{logs['loss']:.3f}", stage=2 if with_real else 1)
    wall = time.monotonic() - start
    log.info("trained the encoder in %.0f s (%d steps): %s", wall, total, history[-1] if history else {})
    return TrainedEncoder(encoder, spec, cfg, history, wall, 0 if real is None else len(real))


def save_encoder(trained: TrainedEncoder, path: Path) -> None:
    """Save the float encoder (a .keras file, atomically)."""
    from trainer.run_folder import save_generator_atomic

    save_generator_atomic(trained.model, path)

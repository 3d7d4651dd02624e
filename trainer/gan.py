"""The GAN as a Keras 3 model with an overridden `train_step` (fit() stays: callbacks, tf.function, metrics).

One step = one D update and one G update with the non-saturating loss (or the hinge loss, `cfg.loss`); with
`cfg.aux_class_weight` both add AC-GAN's class cross-entropy (D on the photos, G on its designs).
Every random draw (latents, instance
noise, label smoothing, DiffAugment) comes from stateless ops seeded by (config seed, global step), so a step is a
pure function of the weights and the step counter — which is what makes `--resume` exact.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from trainer.config import TrainConfig
from trainer.diffaugment import diff_augment
from trainer.distribute import fit_logs, replica_rows


def sample_latents(cfg: TrainConfig, n, seed) -> tf.Tensor:
    """n latent vectors from the configured prior, from a stateless seed ([2] int)."""
    if cfg.z_distribution == "uniform":
        return tf.random.stateless_uniform([n, cfg.z_dim], seed=seed, minval=-1.0, maxval=1.0)
    return tf.random.stateless_normal([n, cfg.z_dim], seed=seed)


class GAN(keras.Model):
    """Holds G, D and the EMA copy of G; `fit()` trains them."""

    def __init__(self, cfg: TrainConfig, generator: keras.Model, discriminator: keras.Model,
                 ema_generator: keras.Model | None, **kwargs):
        super().__init__(**kwargs)
        self.cfg = cfg
        self.generator = generator
        self.discriminator = discriminator
        self.ema_generator = ema_generator
        # Every replica steps it; under tf.distribute the first replica's update is the one kept.
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        # Per-sample losses, averaged by `_mean`: a keras reduction would also divide by the replica count under
        # tf.distribute, and train_step already scales each replica's mean by 1 / replicas for the gradient sum.
        self._bce = keras.losses.BinaryCrossentropy(from_logits=True, reduction="none")

    def bce(self, targets, logits):
        """Mean binary cross-entropy over this replica's rows (no hidden tf.distribute scaling)."""
        return tf.reduce_mean(self._bce(targets, logits))

    def compile(self, g_optimizer: keras.optimizers.Optimizer, d_optimizer: keras.optimizers.Optimizer) -> None:
        super().compile()
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker]

    @property
    def exported_generator(self) -> keras.Model:
        """The generator to sample and export: the EMA copy when there is one."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    def _g_inputs(self, z, labels):
        if not self.cfg.conditional:
            return [z]
        return [z, tf.one_hot(labels, len(self.cfg.class_names or []), dtype=z.dtype)]

    def _d_inputs(self, images, labels):
        return [images, labels] if self.cfg.conditional else images

    def _d_call(self, images, labels):
        """D's (logit, class logits or None)."""
        out = self.discriminator(self._d_inputs(images, labels), training=True)
        return (out[0], out[1]) if isinstance(out, (list, tuple)) else (out, None)

    def _class_loss(self, class_logits, labels):
        """Weighted mean class cross-entropy of this replica's rows (0 without the auxiliary classifier)."""
        if class_logits is None:
            return 0.0
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32),
                                                            logits=tf.cast(class_logits, tf.float32))
        return self.cfg.aux_class_weight * tf.reduce_mean(ce)

    def _augment(self, x, seed, rows=None):
        return diff_augment(x, self.cfg.diffaugment, seed, rows) if self.cfg.diffaugment else x

    def train_step(self, data):
        real, labels = data
        cfg = self.cfg
        batch = tf.shape(real)[0]
        step = self.global_step
        base = tf.stack([tf.constant(cfg.seed, tf.int64), step])

        def seed(k: int):
            return tf.random.experimental.stateless_fold_in(base, k)

        # Fakes are drawn with the real batch's class ids (conditional) so D sees matched class statistics.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        # This replica holds rows [start, start + batch) of the global batch (trainer.distribute): every per-sample
        # draw is made for the global batch and sliced, so R replicas compute what one device would.
        start, total = replica_rows(batch)
        rows = (start, total) if replicas > 1 else None

        def per_row(draw):
            return draw[start:start + batch] if replicas > 1 else draw

        # --- D update
        z = per_row(sample_latents(cfg, total, seed(1)))
        real_in = real
        if cfg.instance_noise_max > 0:
            sigma = tf.random.stateless_uniform([], seed=seed(2), maxval=cfg.instance_noise_max)
            noise_shape = tf.concat([[total], tf.shape(real)[1:]], axis=0)
            real_in = real + sigma * per_row(tf.random.stateless_normal(noise_shape, seed=seed(3)))
        lo, hi = cfg.real_label_range
        real_targets = per_row(tf.random.stateless_uniform([total, 1], seed=seed(4), minval=lo, maxval=hi)) \
            if hi > lo else tf.fill([batch, 1], float(hi))
        with tf.GradientTape() as tape:
            fake = self.generator(self._g_inputs(z, labels), training=True)
            d_real, class_real = self._d_call(self._augment(real_in, seed(5), rows), labels)
            d_fake, _ = self._d_call(self._augment(fake, seed(6), rows), labels)
            if cfg.loss == "hinge":  # in float32 under mixed precision, as the Keras BCE is
                d_real, d_fake = tf.cast(d_real, tf.float32), tf.cast(d_fake, tf.float32)
                d_loss = tf.reduce_mean(tf.nn.relu(1.0 - d_real)) + tf.reduce_mean(tf.nn.relu(1.0 + d_fake))
            else:
                d_loss = self.bce(real_targets, d_real) + self.bce(tf.zeros_like(d_fake), d_fake)
            d_loss = d_loss + self._class_loss(class_real, labels)
            scaled = self.d_optimizer.scale_loss(d_loss / replicas)
        grads = tape.gradient(scaled, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights, strict=True))

        # --- G update (non-saturating)
        z = per_row(sample_latents(cfg, total, seed(7)))
        with tf.GradientTape() as tape:
            fake = self.generator(self._g_inputs(z, labels), training=True)
            d_fake, class_fake = self._d_call(self._augment(fake, seed(8), rows), labels)
            g_loss = -tf.reduce_mean(tf.cast(d_fake, tf.float32)) if cfg.loss == "hinge" else \
                self.bce(tf.ones_like(d_fake), d_fake)
            g_loss = g_loss + self._class_loss(class_fake, labels)
            scaled = self.g_optimizer.scale_loss(g_loss / replicas)
        grads = tape.gradient(scaled, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights, strict=True))

        self._update_ema()
        self.global_step.assign_add(1)
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return fit_logs({"d_loss": self.d_loss_tracker.result(), "g_loss": self.g_loss_tracker.result(),
                         "d_loss_step": d_loss, "g_loss_step": g_loss})

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Nothing to build: G and D are built functional models. (Keras would otherwise trace GAN.call on a data
        batch it first averages over replicas, which fails under MultiWorkerMirroredStrategy.)"""

    def _update_ema(self) -> None:
        if self.ema_generator is None:
            return
        # Warm-up: early on the average follows G closely instead of remembering the random init.
        step = tf.cast(self.global_step, tf.float32)
        decay = tf.minimum(tf.constant(self.cfg.ema_decay, tf.float32), (1.0 + step) / (10.0 + step))
        for ema_w, w in zip(self.ema_generator.weights, self.generator.weights, strict=True):
            if w.trainable:
                ema_w.assign(decay * ema_w + (1.0 - decay) * w)
            else:  # BatchNorm moving statistics follow G
                ema_w.assign(w)

    def call(self, inputs, training=False):
        return self.exported_generator(inputs, training=training)

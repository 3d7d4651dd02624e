"""Training configuration: one dataclass, named presets, and the JSON form stored in every run folder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import UserError

PRESET_NAMES: tuple[str, ...] = ("seed", "edge", "edge2", "tiny")
UPSAMPLE_MODES: tuple[str, ...] = ("nearest", "bilinear")
LOSSES: tuple[str, ...] = ("ns", "hinge")
SIZES_PX: tuple[int, ...] = (32, 64, 128)


@dataclass
class TrainConfig:
    """Everything that decides a training run. Stored resolved as `config.json` in the run folder."""

    preset: str = "edge"  # architecture family: seed (the paper's DCGAN), edge (ours), tiny (tests)
    size_px: int = 128  # side of the square images the generator draws
    z_dim: int = 128  # latent vector length
    z_distribution: str = "normal"  # "uniform" = U(-1, 1) (the paper), "normal" = N(0, 1)
    # Generator channels by output resolution of each block (4x4 or 8x8 start, doubling to size_px).
    g_channels: dict[int, int] = field(default_factory=dict)
    # Discriminator channels by output resolution of each stride-2 block (size_px/2 down to 4).
    d_channels: dict[int, int] = field(default_factory=dict)
    batch_size: int = 64  # images per step
    epochs: int = 100  # passes over the data (the last epoch index to reach when resuming)
    lr_g: float = 2e-4  # Adam learning rate of G
    lr_d: float = 2e-4  # Adam learning rate of D
    beta1: float = 0.5  # Adam beta1 (both)
    beta2: float = 0.999  # Adam beta2 (both)
    bn_momentum: float = 0.9  # BatchNorm moving-average momentum (0.99 needs many steps to settle)
    bn_epsilon: float = 1e-3  # BatchNorm epsilon
    ema_decay: float | None = 0.999  # EMA of G weights; None = no EMA (export the raw G)
    diffaugment: str = "color,translation,cutout"  # DiffAugment policy on real and fake, both updates; "" = off
    real_label_range: tuple[float, float] = (1.0, 1.0)  # real labels drawn U(lo, hi) (one-sided smoothing)
    instance_noise_max: float = 0.0  # reals get N(0, s) noise with s ~ U(0, max) per step
    spectral_norm: bool = True  # spectral normalisation in D (edge, tiny)
    conditional: bool = False  # class-conditional G (label embedding) and projection D
    # AC-GAN's auxiliary classifier (conditional only): D also names the class of each image (trained on the photos),
    # and G is pushed to draw designs D names as the class asked for; 0 = off. Small classes otherwise blur together.
    aux_class_weight: float = 0.0
    # G's 2x upsampling (edge family): "nearest" leaves a regular grid pattern at 2..16 px periods (the Edge TPU's
    # RESIZE_NEAREST_NEIGHBOR); "bilinear" low-passes every upsampling (RESIZE_BILINEAR, also an Edge TPU op).
    upsample: str = "nearest"
    loss: str = "ns"  # "ns" = non-saturating BCE; "hinge" = hinge loss (SN-GAN, FastGAN)
    # FastGAN's skip-layer excitation (edge family): a channel gate computed from the 8 px map multiplies the 64 px
    # one, the 16 px map's gate the 128 px one (global pool, two 1x1 convs, sigmoid: MEAN, CONV_2D, LOGISTIC, MUL).
    skip_excitation: bool = False
    class_names: list[str] | None = None  # classes to train on (None = every class found)
    seed: int = 0  # seeds weights, data order, noise and augmentation
    crop: str = "center"  # "center" crop or "pad" to square
    steps_per_checkpoint: int = 500  # a checkpoint every N steps (and at each epoch end)
    keep_checkpoints: int = 3  # how many recent checkpoints to keep
    keep_epochs: list[int] = field(default_factory=lambda: [1, 10, 50, 100])  # epochs whose G is snapshotted
    data_dir: str = ""  # the training images folder (resolved path)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["g_channels"] = {str(k): v for k, v in self.g_channels.items()}
        data["d_channels"] = {str(k): v for k, v in self.d_channels.items()}
        data["real_label_range"] = list(self.real_label_range)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"config.json has unknown fields {unknown}; was it written by a newer atelier?")
        values = dict(data)
        values["g_channels"] = {int(k): int(v) for k, v in data.get("g_channels", {}).items()}
        values["d_channels"] = {int(k): int(v) for k, v in data.get("d_channels", {}).items()}
        if "real_label_range" in values:
            values["real_label_range"] = tuple(values["real_label_range"])
        return cls(**values)

    def save(self, path: Path) -> None:
        from trainer.run_folder import write_json_atomic

        write_json_atomic(path, self.to_json())

    def validate(self) -> None:
        """Raise UserError for settings that cannot train."""
        if self.preset not in PRESET_NAMES:
            raise UserError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESET_NAMES)}")
        if self.size_px not in SIZES_PX:
            raise UserError(f"--size must be one of {', '.join(map(str, SIZES_PX))}, got {self.size_px}")
        if self.z_distribution not in ("uniform", "normal"):
            raise UserError(f"z_distribution must be 'uniform' or 'normal', got {self.z_distribution!r}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {self.epochs}")
        if self.upsample not in UPSAMPLE_MODES:
            raise UserError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {self.upsample!r}")
        if self.loss not in LOSSES:
            raise UserError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.preset == "seed" and (self.upsample != "nearest" or self.skip_excitation):
            raise UserError("the seed preset is the paper's model: its upsampling is transposed convolutions")
        if self.aux_class_weight < 0:
            raise UserError(f"aux_class_weight must be 0 or more, got {self.aux_class_weight}")
        if self.aux_class_weight > 0 and not self.conditional:
            raise UserError("aux_class_weight needs a class-conditional model (--conditional)")
        if self.crop not in ("center", "pad"):
            raise UserError(f"--crop must be 'center' or 'pad', got {self.crop!r}")
        missing = [r for r in g_resolutions(self) if r not in self.g_channels]
        if missing:
            raise UserError(f"preset {self.preset!r} has no generator width for resolutions {missing}")
        missing = [r for r in d_resolutions(self) if r not in self.d_channels]
        if missing:
            raise UserError(f"preset {self.preset!r} has no discriminator width for resolutions {missing}")


def g_start_px(cfg: TrainConfig) -> int:
    """The generator's first feature map side: the paper's 8x8 at 128 px, 4x4 for ours."""
    return cfg.size_px // 16 if cfg.preset == "seed" else 4


def g_resolutions(cfg: TrainConfig) -> list[int]:
    """Feature-map sides of the generator, from the projection up to size_px."""
    out, r = [], g_start_px(cfg)
    while r <= cfg.size_px:
        out.append(r)
        r *= 2
    return out


def d_resolutions(cfg: TrainConfig) -> list[int]:
    """Output sides of the discriminator's stride-2 blocks (the seed preset's layout is fixed, see networks)."""
    if cfg.preset == "seed":
        return [cfg.size_px // 2, cfg.size_px // 4, cfg.size_px // 8, cfg.size_px // 16]
    out, r = [], cfg.size_px // 2
    while r >= 4:
        out.append(r)
        r //= 2
    return out


# Named presets. The seed preset is gsurma/image_generator as the paper trained it; edge is ours; tiny is for tests.
_PRESETS: dict[str, dict[str, Any]] = {
    "seed": {
        "z_dim": 100,
        "z_distribution": "uniform",
        # G: dense to 8x8x1024, then 5x5 stride-2 transposed convs 512/256/128/64 (last entry: the 5x5 to RGB input).
        "g_channels": {8: 1024, 16: 512, 32: 256, 64: 128, 128: 64},
        # D: 5x5 convs 64, 128, 256 (stride 2), 512 (stride 1), 1024 (stride 2): keyed by stride-2 output side.
        "d_channels": {64: 64, 32: 128, 16: 256, 8: 1024},
        "batch_size": 64,
        "lr_g": 4e-4,
        "lr_d": 4e-5,
        "beta1": 0.5,
        "bn_momentum": 0.99,
        "bn_epsilon": 5e-5,
        "ema_decay": None,
        "diffaugment": "",
        "real_label_range": (0.9, 1.0),
        "instance_noise_max": 0.1,
        "spectral_norm": False,
    },
    "edge": {
        "z_dim": 128,
        "z_distribution": "normal",
        # Widths chosen by measurement (bench/train_throughput.py): on a 2-core CPU the wide high-resolution
        # layers cost far more than their MACs suggest (memory-bound), so G's channels halve as resolution doubles
        # and its 128 px block is thin (0.35 GMAC per design); D is thin at high resolution and wide at 8x8/4x4,
        # where width is cheap. A narrower D (256 at 4x4, 128 at 8x8) sat at chance (loss 1.386) for 500 steps.
        "g_channels": {4: 256, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16},
        "d_channels": {64: 16, 32: 32, 16: 128, 8: 256, 4: 512},
        "batch_size": 32,
        # TTUR as in SN-GAN practice: D learns faster than G; Adam beta1 0 with spectral norm.
        "lr_g": 1e-4,
        "lr_d": 4e-4,
        "beta1": 0.0,
        "beta2": 0.99,
    },
    "tiny": {
        "z_dim": 16,
        "z_distribution": "normal",
        "size_px": 32,
        "g_channels": {4: 16, 8: 8, 16: 8, 32: 4, 64: 4, 128: 4},
        "d_channels": {64: 4, 32: 4, 16: 8, 8: 8, 4: 16},
        "batch_size": 16,
        "ema_decay": 0.99,
        "diffaugment": "color,translation,cutout",
        "steps_per_checkpoint": 50,
    },
}


# edge2: the realism recipe (the ablation in docs/training.md): edge plus bilinear upsampling (no grid pattern), hinge
# loss, skip-layer excitation and wider high-resolution blocks (0.58 GMAC per 128 px design).
_PRESETS["edge2"] = {
    **_PRESETS["edge"],
    "g_channels": {4: 256, 8: 256, 16: 128, 32: 96, 64: 48, 128: 24},
    "upsample": "bilinear",
    "loss": "hinge",
    "skip_excitation": True,
}


def parse_setting(text: str) -> tuple[str, Any]:
    """`FIELD=VALUE` from `atelier train --set` as (field, value); VALUE is JSON, or a plain string.

    Raises:
        UserError: no "=", an unknown field, or a value of the wrong kind for the field.
    """
    import json

    name, sep, raw = text.partition("=")
    name = name.strip().replace("-", "_")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if not sep or not name:
        raise UserError(f"--set takes FIELD=VALUE (e.g. --set upsample=bilinear), got {text!r}")
    if name not in fields:
        raise UserError(f"--set {name}: no such setting; settings: {', '.join(sorted(fields))}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    default = getattr(TrainConfig(), name)
    if name in ("g_channels", "d_channels"):
        if not isinstance(value, dict):
            raise UserError(f'--set {name} takes a JSON object of side: width, e.g. {{"64": 48, "128": 24}}')
        try:
            return name, {int(k): int(v) for k, v in value.items()}
        except (TypeError, ValueError) as exc:
            raise UserError(f"--set {name}: sides and widths must be whole numbers ({exc})") from exc
    if isinstance(default, bool) and not isinstance(value, bool):
        raise UserError(f"--set {name} takes true or false, got {raw!r}")
    if isinstance(default, (int, float)) and not isinstance(default, bool) and (
            isinstance(value, bool) or not isinstance(value, (int, float))):
        raise UserError(f"--set {name} takes a number, got {raw!r}")
    if isinstance(default, str) and not isinstance(value, str):
        value = raw
    return name, value


def preset(name: str, **overrides: Any) -> TrainConfig:
    """The named preset with `overrides` applied (unknown field names are an error)."""
    if name not in _PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise UserError(f"unknown config fields {bad}")
    values = {"preset": name, **_PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    for widths in ("g_channels", "d_channels"):  # partial widths override the preset's at those sides only
        if widths in overrides and widths in _PRESETS[name] and overrides[widths] is not None:
            values[widths] = {**_PRESETS[name][widths], **overrides[widths]}
    cfg = TrainConfig(**values)
    cfg.validate()
    return cfg

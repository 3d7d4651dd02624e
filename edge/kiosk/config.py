"""Kiosk settings: one dataclass, read from a TOML file (schema shared with the firmware), CLI flags on top.

The firmware writes /etc/atelier/kiosk.toml. Every key is optional; an unknown key or a value of the wrong
type is a UserError naming the key, so a typo in the field never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from edge.errors import UserError
from edge.kiosk.latents import MAX_MIX_STEPS

REPO_ROOT = Path(__file__).resolve().parents[2]
# The default bundle when neither a flag nor the config file names one (may not exist on a dev checkout).
DEFAULT_BUNDLE = REPO_ROOT / "models" / "default"
DELEGATES: tuple[str, ...] = ("cpu", "gpu", "edgetpu")


@dataclass(frozen=True)
class KioskConfig:
    """Everything the kiosk server needs to start. Field names are the TOML keys."""

    # Shared with the firmware engineer's /etc/atelier/kiosk.toml.
    bundle: Path = DEFAULT_BUNDLE  # model bundle directory served by the kiosk
    models_dir: Path = Path("/var/lib/atelier/models")  # where provisioned bundles live (informational here)
    capture_store: Path = Path("/var/lib/atelier/captures")  # capture store root (capture pipeline)
    camera: str = ""  # FrameSource URI: v4l2:///dev/video0, file://clip.avi, synthetic://; "" = no camera
    host: str = "127.0.0.1"  # bind address; loopback by default (the kiosk browser runs on the same box)
    port: int = 8000  # TCP port; 0 picks a free one
    delegate: str = "cpu"  # interpreter delegate: cpu | gpu | edgetpu
    num_threads: int = 2  # interpreter threads per model
    hardware: str = "generic"  # board name from provisioning (shown in /healthz)
    # Kiosk-only keys.
    grid_size: int = 8  # designs in the shopper grid
    neighbour_radius: float = 0.35  # default latent step for "more like this"
    mix_steps: int = 6  # interpolation steps shown by "mix" (steps + 1 pictures)
    attract_idle_s: float = 60.0  # seconds without a touch before attract mode starts
    attract_fps: float = 12.0  # frame rate the page plays the latent walk at
    walk_steps: int = 24  # frames between two keyframes of the attract walk (2..64: a design ID mix step)
    max_designs: int = 64  # upper bound of `n` in one API request
    max_body_bytes: int = 16_384  # request bodies above this are refused with 413
    cache_designs: int = 512  # PNGs kept in memory by design ID
    queue_limit: int = 64  # pending generation jobs before the API answers 503
    stall_timeout_s: float = 3.0  # a camera with no frame for this long is reconnected
    # Staff mode, capture and model hot swap (edge.kiosk.staff_desk, edge.kiosk.routes.staff).
    staff_pin_hash: str = ""  # `atelier capture hash-pin` output; "" = staff mode (capture, uploads) off
    staff_key_sha256: str = ""  # sha256 of the staff key file (atelier-staff.key on a USB stick); "" = no key
    usb_roots: str = "/media,/run/media"  # where USB sticks are mounted (staff key, bundles to install), comma list
    capture_face_blur: bool = True  # blur faces before a capture is written (privacy)
    capture_min_sharpness: float = 150.0  # Laplacian variance (480 px analysis copy, centre) below = blurry
    capture_min_mean_luma: float = 45.0  # mean luma below which a frame is too dark
    capture_max_mean_luma: float = 225.0  # mean luma above which a frame is over-exposed
    capture_duplicate_max_bits: int = 5  # dHash distance to a recent capture at or below which = duplicate
    capture_max_mb: int = 0  # the capture store's size limit in MB; 0 = only the disk's free-space floor
    capture_min_free_mb: int = 100  # refuse captures that would leave less free on the store's disk
    models_watch_s: float = 2.0  # seconds between scans of models_dir for new bundles; 0 = no watching

    def replace(self, **changes: Any) -> KioskConfig:
        """A copy with the given fields changed (None values are ignored: unset CLI flags keep the file's)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


_PATH_KEYS = {"bundle", "models_dir", "capture_store"}
_INT_KEYS = {"port", "num_threads", "grid_size", "mix_steps", "walk_steps", "max_designs", "max_body_bytes",
             "cache_designs", "queue_limit", "capture_duplicate_max_bits", "capture_max_mb", "capture_min_free_mb"}
_FLOAT_KEYS = {"neighbour_radius", "attract_idle_s", "attract_fps", "stall_timeout_s", "capture_min_sharpness",
               "capture_min_mean_luma", "capture_max_mean_luma", "models_watch_s"}
_STR_KEYS = {"camera", "host", "delegate", "hardware", "staff_pin_hash", "staff_key_sha256", "usb_roots"}
_BOOL_KEYS = {"capture_face_blur"}


def _coerce(key: str, value: Any) -> Any:
    if key in _PATH_KEYS:
        if not isinstance(value, str) or not value:
            raise UserError(f"config key {key!r} must be a non-empty path string, got {value!r}")
        return Path(value)
    if key in _INT_KEYS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"config key {key!r} must be an integer, got {value!r}")
        return value
    if key in _FLOAT_KEYS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"config key {key!r} must be a number, got {value!r}")
        return float(value)
    if key in _STR_KEYS:
        if not isinstance(value, str):
            raise UserError(f"config key {key!r} must be a string, got {value!r}")
        return value
    if key in _BOOL_KEYS:
        if not isinstance(value, bool):
            raise UserError(f"config key {key!r} must be true or false, got {value!r}")
        return value
    raise UserError(f"config key {key!r} cannot be set from a file")


def validate(config: KioskConfig) -> KioskConfig:
    """Check ranges that a type alone does not; returns the config unchanged or raises UserError."""
    checks: list[tuple[bool, str]] = [
        (0 <= config.port <= 65535, f"port must be in 0..65535, got {config.port}"),
        (1 <= config.num_threads <= 64, f"num_threads must be in 1..64, got {config.num_threads}"),
        (config.delegate in DELEGATES,
         f"delegate must be one of {', '.join(DELEGATES)}, got {config.delegate!r}"),
        (1 <= config.max_designs <= 256, f"max_designs must be in 1..256, got {config.max_designs}"),
        (1 <= config.grid_size <= config.max_designs,
         f"grid_size must be in 1..max_designs ({config.max_designs}), got {config.grid_size}"),
        (0.0 < config.neighbour_radius <= 2.0,
         f"neighbour_radius must be in (0, 2], got {config.neighbour_radius}"),
        (1 <= config.mix_steps <= 32, f"mix_steps must be in 1..32, got {config.mix_steps}"),
        (config.attract_idle_s > 0, f"attract_idle_s must be > 0, got {config.attract_idle_s}"),
        (1.0 <= config.attract_fps <= 60.0, f"attract_fps must be in 1..60, got {config.attract_fps}"),
        # A walk frame's ID is a mix of two keyframes in walk_steps steps: no more than a design ID can hold.
        (2 <= config.walk_steps <= MAX_MIX_STEPS,
         f"walk_steps must be in 2..{MAX_MIX_STEPS}, got {config.walk_steps}"),
        (256 <= config.max_body_bytes <= 1 << 20, f"max_body_bytes must be in 256..1048576, got "
                                                 f"{config.max_body_bytes}"),
        (0 <= config.cache_designs <= 100_000,
         f"cache_designs must be in 0..100000, got {config.cache_designs}"),
        (1 <= config.queue_limit <= 10_000, f"queue_limit must be in 1..10000, got {config.queue_limit}"),
        (config.stall_timeout_s > 0, f"stall_timeout_s must be > 0, got {config.stall_timeout_s}"),
        (bool(config.host), "host must not be empty"),
        (config.capture_min_sharpness >= 0, "capture_min_sharpness must be >= 0"),
        (0 <= config.capture_min_mean_luma < config.capture_max_mean_luma <= 255,
         "capture_min_mean_luma < capture_max_mean_luma, both in 0..255"),
        (-1 <= config.capture_duplicate_max_bits <= 32, "capture_duplicate_max_bits must be in -1..32 (-1: off)"),
        (config.capture_max_mb >= 0, "capture_max_mb must be >= 0 (0: no limit)"),
        (config.capture_min_free_mb >= 0, "capture_min_free_mb must be >= 0"),
        (config.models_watch_s >= 0, "models_watch_s must be >= 0 (0: no watching)"),
        (not config.staff_key_sha256 or re.fullmatch(r"[0-9a-f]{64}", config.staff_key_sha256) is not None,
         "staff_key_sha256 must be 64 lowercase hex digits: `sha256sum atelier-staff.key` of the key file"),
    ]
    if config.staff_pin_hash:
        from edge.kiosk.staff import check_pin_hash

        check_pin_hash(config.staff_pin_hash)
    for ok, message in checks:
        if not ok:
            raise UserError(f"kiosk config: {message}")
    return config


def load_config(path: Path | None) -> KioskConfig:
    """Read a kiosk TOML file into a KioskConfig (defaults for missing keys).

    Args:
        path: the TOML file, or None for the built-in defaults.

    Returns:
        The validated config.

    Raises:
        UserError: the file is missing, is not valid TOML, has an unknown key or a bad value.
    """
    if path is None:
        return validate(KioskConfig())
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"kiosk config {path} does not exist; give --config an existing TOML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read kiosk config {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"kiosk config {path} is not valid TOML: {exc}") from None
    known = {f.name for f in fields(KioskConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(
            f"kiosk config {path}: unknown key(s) {', '.join(unknown)}; "
            f"known keys: {', '.join(sorted(known))}"
        )
    values = {key: _coerce(key, value) for key, value in data.items()}
    # Relative paths in the file are relative to the file, not to wherever the kiosk happened to start.
    for key in _PATH_KEYS & values.keys():
        if not values[key].is_absolute():
            values[key] = (path.parent / values[key]).resolve()
    return validate(KioskConfig(**values))

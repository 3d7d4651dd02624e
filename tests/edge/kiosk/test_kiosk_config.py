"""Kiosk settings from TOML: the firmware's schema, kiosk-only keys, and a clear error for every bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.errors import UserError
from edge.kiosk.config import DEFAULT_BUNDLE, KioskConfig, load_config
from edge.kiosk.latents import DesignId, parse_design_id, walk_frame

FIRMWARE_TOML = """
bundle = "/var/lib/atelier/models/default"
models_dir = "/var/lib/atelier/models"
capture_store = "/var/lib/atelier/captures"
camera = "v4l2:///dev/atelier-camera"
host = "127.0.0.1"
port = 8000
delegate = "cpu"
num_threads = 2
hardware = "generic"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kiosk.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_firmware_file_loads_with_its_types(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, FIRMWARE_TOML))
    assert config.bundle == Path("/var/lib/atelier/models/default")
    assert config.capture_store == Path("/var/lib/atelier/captures")
    assert config.camera == "v4l2:///dev/atelier-camera"
    assert (config.port, config.num_threads, config.delegate) == (8000, 2, "cpu")


def test_kiosk_keys_and_relative_paths(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, 'bundle = "models/x"\ngrid_size = 12\nattract_idle_s = 5\n'))
    assert config.bundle == (tmp_path / "models" / "x").resolve()  # relative to the file, not the cwd
    assert config.grid_size == 12
    assert config.attract_idle_s == 5.0 and isinstance(config.attract_idle_s, float)


def test_no_file_means_defaults() -> None:
    config = load_config(None)
    assert config == KioskConfig()
    assert config.bundle == DEFAULT_BUNDLE and config.host == "127.0.0.1"


def test_flags_override_only_what_they_set(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, FIRMWARE_TOML)).replace(port=9000, camera=None, host=None)
    assert config.port == 9000
    assert config.camera == "v4l2:///dev/atelier-camera"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("prot = 8000\n", "unknown key(s) prot"),
        ('port = "8000"\n', "'port' must be an integer"),
        ("port = 70000\n", "port must be in 0..65535"),
        ("num_threads = true\n", "'num_threads' must be an integer"),
        ("num_threads = 0\n", "num_threads must be in 1..64"),
        ('delegate = "tpu"\n', "delegate must be one of"),
        ("grid_size = 0\n", "grid_size must be in"),
        ("grid_size = 100\nmax_designs = 50\n", "grid_size must be in 1..max_designs (50)"),
        ('attract_idle_s = "soon"\n', "'attract_idle_s' must be a number"),
        ("attract_idle_s = -1\n", "attract_idle_s must be > 0"),
        ("neighbour_radius = 3.0\n", "neighbour_radius must be in (0, 2]"),
        ("max_body_bytes = 10\n", "max_body_bytes"),
        ("walk_steps = 65\n", "walk_steps must be in 2..64"),
        ("walk_steps = 1\n", "walk_steps must be in 2..64"),
        ('bundle = ""\n', "'bundle' must be a non-empty path string"),
        ("camera = 3\n", "'camera' must be a string"),
        ('host = ""\n', "host must not be empty"),
        ("port = \n", "not valid TOML"),
    ],
)
def test_bad_config_values_are_refused_with_the_key_named(tmp_path: Path, text: str, complaint: str) -> None:
    with pytest.raises(UserError) as excinfo:
        load_config(_write(tmp_path, text))
    assert complaint in str(excinfo.value)


def test_a_missing_config_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_every_walk_steps_the_config_accepts_makes_walk_ids_that_parse(tmp_path: Path) -> None:
    steps = 2
    while True:  # the largest walk_steps a config file may set
        try:
            load_config(_write(tmp_path, f"walk_steps = {steps + 1}\n"))
        except UserError:
            break
        steps += 1
        assert steps < 10_000
    assert steps >= KioskConfig().walk_steps
    for frame in (0, 1, steps - 1, steps, 7 * steps + steps // 2):
        design = DesignId("0123456789ab", None, walk_frame(12345, frame, steps))
        assert parse_design_id(str(design)) == design, frame

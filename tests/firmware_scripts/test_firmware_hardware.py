"""detect_hardware.sh on staged roots holding the files each board has (fakes only for hardware we lack)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from test_firmware_scripts import make_bundle, run_script, snapshot


def jetson(root: Path) -> None:
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/nv_tegra_release").write_text(
        "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref\n"
    )


def coral_devboard(root: Path) -> None:
    (root / "proc/device-tree").mkdir(parents=True, exist_ok=True)
    (root / "proc/device-tree/model").write_bytes(
        b"Freescale i.MX8MQ Phanbell\x00"
    )  # device-tree strings end in NUL


def apex_device(root: Path) -> None:
    (root / "dev").mkdir(parents=True, exist_ok=True)
    (root / "dev/apex_0").write_text("")


def usb_device(root: Path, name: str, vendor: str, product: str) -> None:
    device = root / "sys/bus/usb/devices" / name
    device.mkdir(parents=True, exist_ok=True)
    (device / "idVendor").write_text(vendor + "\n")
    (device / "idProduct").write_text(product + "\n")


def libedgetpu(root: Path, folder: str = "usr/lib/x86_64-linux-gnu") -> None:
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / folder / "libedgetpu.so.1.0").write_bytes(b"\x7fELF")


def detect(root: Path) -> dict[str, str]:
    result = run_script("detect_hardware.sh", "--root", root)
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def test_plain_box_is_generic_on_cpu(tmp_path: Path) -> None:
    usb_device(tmp_path, "1-1", "046d", "085b")  # a webcam, not an Edge TPU
    assert detect(tmp_path) == {"hardware": "generic", "delegate": "cpu"}


def test_jetson_stays_on_the_cpu(tmp_path: Path) -> None:
    jetson(tmp_path)
    assert detect(tmp_path) == {"hardware": "jetson", "delegate": "cpu"}


def test_coral_devboard_with_runtime_uses_the_edgetpu(tmp_path: Path) -> None:
    coral_devboard(tmp_path)
    apex_device(tmp_path)
    libedgetpu(tmp_path, "usr/lib/aarch64-linux-gnu")
    assert detect(tmp_path) == {"hardware": "coral-devboard", "delegate": "edgetpu"}


def test_coral_devboard_without_the_apex_driver_warns(tmp_path: Path) -> None:
    coral_devboard(tmp_path)
    libedgetpu(tmp_path)
    result = run_script("detect_hardware.sh", "--root", tmp_path)
    assert result.returncode == 0
    assert "hardware=coral-devboard\ndelegate=cpu\n" == result.stdout
    assert "apex driver is not loaded" in result.stderr


@pytest.mark.parametrize(("vendor", "product"), [("1a6e", "089a"), ("18d1", "9302")])
def test_usb_accelerator_before_and_after_firmware_load(tmp_path: Path, vendor: str, product: str) -> None:
    usb_device(tmp_path, "2-1", vendor, product)
    libedgetpu(tmp_path)
    assert detect(tmp_path) == {"hardware": "coral-usb", "delegate": "edgetpu"}


def test_edgetpu_without_runtime_falls_back_to_cpu_and_says_how_to_fix(tmp_path: Path) -> None:
    usb_device(tmp_path, "2-1", "18d1", "9302")
    result = run_script("detect_hardware.sh", "--root", tmp_path)
    assert result.returncode == 0
    assert result.stdout == "hardware=coral-usb\ndelegate=cpu\n"
    assert "libedgetpu1-std" in result.stderr


def test_pcie_edgetpu_in_a_pc_is_generic_with_the_edgetpu(tmp_path: Path) -> None:
    apex_device(tmp_path)
    libedgetpu(tmp_path, "usr/local/lib")
    assert detect(tmp_path) == {"hardware": "generic", "delegate": "edgetpu"}


def test_jetson_with_a_usb_accelerator_keeps_the_board_and_uses_the_tpu(tmp_path: Path) -> None:
    jetson(tmp_path)
    usb_device(tmp_path, "1-2", "18d1", "9302")
    libedgetpu(tmp_path, "usr/lib/aarch64-linux-gnu")
    assert detect(tmp_path) == {"hardware": "jetson", "delegate": "edgetpu"}


def test_write_updates_only_hardware_and_delegate(tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = run_script("provision.sh", "--root", root, "--bundle", make_bundle(tmp_path / "bundle"))
    assert result.returncode == 0, result.stderr
    config_path = root / "etc/atelier/kiosk.toml"
    config_path.write_text(config_path.read_text().replace("num_threads = 2", "num_threads = 3"))
    usb_device(root, "2-1", "1a6e", "089a")
    libedgetpu(root)

    result = run_script("detect_hardware.sh", "--root", root, "--write")
    assert result.returncode == 0, result.stderr
    config = tomllib.loads(config_path.read_text())
    assert (config["hardware"], config["delegate"], config["num_threads"]) == ("coral-usb", "edgetpu", 3)
    assert config_path.stat().st_mode & 0o777 == 0o640

    before = snapshot(root)
    assert run_script("detect_hardware.sh", "--root", root, "--write").returncode == 0
    assert snapshot(root) == before


def test_write_dry_run_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert run_script("provision.sh", "--root", root, "--bundle", make_bundle(tmp_path / "b")).returncode == 0
    jetson(root)
    before = snapshot(root)
    result = run_script("detect_hardware.sh", "--root", root, "--write", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would update /etc/atelier/kiosk.toml" in result.stderr
    assert snapshot(root) == before


def test_write_without_a_config_is_a_clear_error(tmp_path: Path) -> None:
    result = run_script("detect_hardware.sh", "--root", tmp_path, "--write")
    assert result.returncode == 1
    assert "no kiosk config" in result.stderr
    assert "run provision.sh first" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "etc/atelier/kiosk.toml"], "absolute path"),
        (["--root", "/no/such/root"], "does not exist"),
    ],
)
def test_bad_arguments(args: list[str], message: str) -> None:
    result = run_script("detect_hardware.sh", *args)
    assert result.returncode in (1, 2)
    assert message in result.stderr


def test_provision_writes_the_detected_board_into_a_new_config(tmp_path: Path) -> None:
    root = tmp_path / "root"
    coral_devboard(root)
    apex_device(root)
    libedgetpu(root, "usr/lib/aarch64-linux-gnu")
    result = run_script("provision.sh", "--root", root, "--bundle", make_bundle(tmp_path / "bundle"))
    assert result.returncode == 0, result.stderr
    assert "detected hardware: coral-devboard, delegate: edgetpu" in result.stdout
    config = tomllib.loads((root / "etc/atelier/kiosk.toml").read_text())
    assert (config["hardware"], config["delegate"]) == ("coral-devboard", "edgetpu")

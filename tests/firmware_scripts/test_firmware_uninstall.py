"""uninstall.sh --root on a provisioned staging tree: what goes, what stays (the captures), idempotence."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_firmware_scripts import make_bundle, run_script, snapshot

REMOVED = (
    "etc/systemd/system/atelier-kiosk.service",
    "etc/systemd/system/atelier-browser.service",
    "etc/systemd/system/multi-user.target.wants/atelier-kiosk.service",
    "etc/systemd/system/graphical.target.wants/atelier-browser.service",
    "etc/udev/rules.d/70-atelier-camera.rules",
    "etc/udev/rules.d/71-atelier-edgetpu.rules",
    "etc/systemd/journald.conf.d/atelier.conf",
    "etc/pam.d/atelier-browser",
    "etc/atelier",
    "opt/atelier",
    "var/lib/atelier/models",
    "var/lib/atelier/browser",
)


@pytest.fixture
def staged(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    result = run_script("provision.sh", "--root", root, "--bundle", make_bundle(tmp_path / "bundle"))
    assert result.returncode == 0, result.stderr
    capture = root / "var/lib/atelier/captures/t-shirt/0001.png"
    capture.parent.mkdir(parents=True)
    capture.write_bytes(b"\x89PNG\r\n\x1a\n")
    # Something of the box's own beside ours must survive.
    (root / "etc/udev/rules.d/50-vendor.rules").write_text('SUBSYSTEM=="usb", MODE="0664"\n')
    return root


def test_uninstall_removes_the_install_and_keeps_the_captures(staged: Path) -> None:
    result = run_script("uninstall.sh", "--root", staged)
    assert result.returncode == 0, result.stderr
    for rel in REMOVED:
        assert not (staged / rel).exists() and not (staged / rel).is_symlink(), rel
    assert (staged / "var/lib/atelier/captures/t-shirt/0001.png").read_bytes() == b"\x89PNG\r\n\x1a\n"
    assert (staged / "etc/udev/rules.d/50-vendor.rules").is_file()
    assert "kept /var/lib/atelier/captures" in result.stdout


def test_second_uninstall_changes_nothing(staged: Path) -> None:
    assert run_script("uninstall.sh", "--root", staged).returncode == 0
    before = snapshot(staged)
    result = run_script("uninstall.sh", "--root", staged)
    assert result.returncode == 0, result.stderr
    assert "nothing to remove" in result.stdout
    assert snapshot(staged) == before


def test_delete_captures_removes_the_data_folder(staged: Path) -> None:
    result = run_script("uninstall.sh", "--root", staged, "--delete-captures")
    assert result.returncode == 0, result.stderr
    assert not (staged / "var/lib/atelier").exists()


def test_dry_run_removes_nothing(staged: Path) -> None:
    before = snapshot(staged)
    result = run_script("uninstall.sh", "--root", staged, "--dry-run", "--delete-captures")
    assert result.returncode == 0, result.stderr
    assert snapshot(staged) == before
    assert "would remove /var/lib/atelier" in result.stdout


def test_remove_user_is_skipped_under_root(staged: Path) -> None:
    result = run_script("uninstall.sh", "--root", staged, "--remove-user")
    assert result.returncode == 0, result.stderr
    assert "skip (--root): userdel atelier" in result.stdout


def test_reprovision_after_uninstall_restores_the_tree_around_the_captures(
    staged: Path, tmp_path: Path
) -> None:
    assert run_script("uninstall.sh", "--root", staged).returncode == 0
    result = run_script("provision.sh", "--root", staged, "--bundle", tmp_path / "bundle")
    assert result.returncode == 0, result.stderr
    assert (staged / "etc/systemd/system/atelier-kiosk.service").is_file()
    assert (staged / "var/lib/atelier/captures/t-shirt/0001.png").is_file()


def test_missing_root_is_an_error(tmp_path: Path) -> None:
    result = run_script("uninstall.sh", "--root", tmp_path / "nope")
    assert result.returncode == 1
    assert "does not exist" in result.stderr

"""provision.sh and uninstall.sh on a live system, without touching this machine.

The scripts run as root in a chroot whose root is an overlay of this machine's `/` with a throwaway tmpfs
on top, inside a private mount namespace (`unshare --mount`): useradd, chown and the real paths all happen,
and all of it disappears with the namespace. Packages and the venv are skipped (they need the network);
systemd is not PID 1 in a chroot, which is the image-building case the scripts handle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap

import pytest
from test_firmware_scripts import FIRMWARE, make_bundle

SANDBOX = textwrap.dedent(
    """\
    set -euo pipefail
    box=$1 firmware=$2 bundle=$3
    mount -t tmpfs -o size=256m tmpfs "$box"
    mkdir "$box/upper" "$box/work" "$box/root"
    mount -t overlay overlay -o "lowerdir=/,upperdir=$box/upper,workdir=$box/work" "$box/root"
    for d in proc sys dev; do mount --bind "/$d" "$box/root/$d"; done
    mkdir -p "$box/root/srv/firmware" "$box/root/srv/bundle"
    mount --bind -o ro "$firmware" "$box/root/srv/firmware"
    mount --bind -o ro "$bundle" "$box/root/srv/bundle"
    in_box() { chroot "$box/root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
    echo "### dry"
    in_box /srv/firmware/provision.sh --bundle /srv/bundle --skip-packages --skip-venv --dry-run
    echo "### after-dry"
    in_box ls -d /etc/atelier /opt/atelier /var/lib/atelier /etc/systemd/system/atelier-kiosk.service \
      2>&1 || true
    in_box id atelier 2>&1 || true
    echo "### first"
    in_box /srv/firmware/provision.sh --bundle /srv/bundle --skip-packages --skip-venv
    echo "### second"
    in_box /srv/firmware/provision.sh --bundle /srv/bundle --skip-packages --skip-venv
    echo "### owners"
    in_box stat -c '%n %U:%G %a' /var/lib/atelier /var/lib/atelier/captures /var/lib/atelier/browser \\
      /etc/atelier/kiosk.toml
    echo "### groups"
    in_box id -nG atelier
    echo "### uninstall"
    in_box /opt/atelier/firmware/uninstall.sh --remove-user
    echo "### after"
    in_box id atelier 2>&1 || true
    in_box ls /var/lib/atelier
    """
)


def sections(output: str) -> dict[str, str]:
    parts = output.split("### ")[1:]
    return {part.split("\n", 1)[0]: part.split("\n", 1)[1] for part in parts}


@pytest.fixture(scope="module")
def live_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    assert os.geteuid() == 0, "the live-system test needs root (developer machines and CI run as root)"
    assert shutil.which("unshare"), "unshare (util-linux) is missing"
    tmp = tmp_path_factory.mktemp("live")
    bundle = make_bundle(tmp / "bundle")
    box = tmp / "box"
    box.mkdir()
    script = tmp / "sandbox.sh"
    script.write_text(SANDBOX)
    result = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "bash",
            str(script),
            str(box),
            str(FIRMWARE),
            str(bundle),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return sections(result.stdout)


def test_live_dry_run_changes_nothing(live_run: dict[str, str]) -> None:
    assert "would run: useradd --system" in live_run["dry"]
    assert "would install /etc/systemd/system/atelier-kiosk.service" in live_run["dry"]
    after = live_run["after-dry"]
    paths = ("/etc/atelier", "/opt/atelier", "/var/lib/atelier", "/etc/systemd/system/atelier-kiosk.service")
    for path in paths:
        assert f"{path}': No such file or directory" in after
    assert "no such user" in after


def test_first_live_run_creates_the_user_and_owns_the_data(live_run: dict[str, str]) -> None:
    first = live_run["first"]
    assert "skip (--skip-packages)" in first and "skip (--skip-venv)" in first
    assert "systemd is not running here" in first
    owners = dict(line.split(" ", 1) for line in live_run["owners"].splitlines())
    assert owners["/var/lib/atelier"] == "atelier:atelier 750"
    assert owners["/var/lib/atelier/captures"] == "atelier:atelier 750"
    assert owners["/var/lib/atelier/browser"] == "atelier:atelier 700"
    assert owners["/etc/atelier/kiosk.toml"] == "root:atelier 640"  # the service reads it, cannot change it
    assert "video" in live_run["groups"].split()


def test_second_live_run_changes_nothing(live_run: dict[str, str]) -> None:
    second = live_run["second"]
    assert "user atelier exists" in second
    assert "Done: nothing to change" in second


def test_live_uninstall_keeps_captures_and_removes_the_user(live_run: dict[str, str]) -> None:
    assert "run: userdel atelier" in live_run["uninstall"]
    assert "no such user" in live_run["after"]
    assert live_run["after"].split()[-1] == "captures"

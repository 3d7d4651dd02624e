"""`atelier kiosk` as a process: refuses what it cannot trust, talks to systemd, serves, stops cleanly."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge.bundle import MANIFEST


@pytest.fixture(scope="module")
def no_tensorflow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PYTHONPATH entry whose `tensorflow` fails to import: the kiosk must start without TensorFlow."""
    root = tmp_path_factory.mktemp("no-tf")
    (root / "tensorflow").mkdir()
    (root / "tensorflow" / "__init__.py").write_text('raise ImportError("the kiosk imported TensorFlow")\n')
    return root


def kiosk_env(no_tensorflow: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(no_tensorflow), env.get("PYTHONPATH")]))
    return {**env, **extra}


def run_kiosk(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    config = tmp_path / "empty.toml"
    config.write_text("")
    return subprocess.run([sys.executable, "-m", "atelier", "kiosk", "--config", str(config), *args],
                          env=env, capture_output=True, text=True, timeout=120)


def damaged_copy(bundle: Path, tmp_path: Path, how: str) -> Path:
    copy = tmp_path / f"bundle-{how}"
    shutil.copytree(bundle, copy)
    if how == "flipped-byte":
        model = copy / "generator_b1.tflite"
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0x01
        model.write_bytes(bytes(data))
    elif how == "no-manifest":
        (copy / MANIFEST).unlink()
    elif how == "missing-model":
        (copy / "generator_b8.tflite").unlink()
    return copy


@pytest.mark.parametrize(
    ("how", "complaint"),
    [
        ("flipped-byte", "checksum"),
        ("no-manifest", "manifest"),
        ("missing-model", "generator_b8.tflite"),
    ],
)
def test_a_damaged_bundle_is_refused_before_serving(
    tiny_bundle: Path, tmp_path: Path, no_tensorflow: Path, how: str, complaint: str
) -> None:
    result = run_kiosk(["--bundle", str(damaged_copy(tiny_bundle, tmp_path, how)), "--port", "0"],
                       kiosk_env(no_tensorflow), tmp_path)
    assert result.returncode == 2, result.stderr
    assert complaint in result.stderr
    assert "event=ready" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--bundle", "/nonexistent/bundle"], "no model bundle at /nonexistent/bundle"),
        (["--camera", "webcam"], "camera URI 'webcam' is not understood"),
        (["--camera", "file:///nonexistent.avi"], "does not exist"),
        (["--port", "70000"], "port must be in 0..65535"),
        (["--host", "no-such-host.invalid"], "cannot resolve --host"),
    ],
)
def test_bad_flags_are_refused(
    tiny_bundle: Path, tmp_path: Path, no_tensorflow: Path, args: list[str], complaint: str
) -> None:
    result = run_kiosk(["--bundle", str(tiny_bundle), "--port", "0", *args], kiosk_env(no_tensorflow), tmp_path)
    assert result.returncode == 2, result.stderr
    assert complaint in result.stderr and "Traceback" not in result.stderr


def test_a_bad_config_file_is_refused(tiny_bundle: Path, tmp_path: Path, no_tensorflow: Path) -> None:
    bad = tmp_path / "kiosk.toml"
    bad.write_text('grid_size = 8\ncolour = "red"\n')
    result = run_kiosk(["--bundle", str(tiny_bundle), "--config", str(bad)], kiosk_env(no_tensorflow), tmp_path)
    assert result.returncode == 2 and "unknown key(s) colour" in result.stderr


def test_a_port_in_use_is_refused(tiny_bundle: Path, tmp_path: Path, no_tensorflow: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_kiosk(["--bundle", str(tiny_bundle), "--port", str(port)], kiosk_env(no_tensorflow), tmp_path)
    assert result.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    folder = tempfile.mkdtemp(prefix="kiosk-notify-", dir="/tmp")  # AF_UNIX paths must stay short
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(60.0)
    yield sock, path
    sock.close()
    shutil.rmtree(folder)


def receive_until(sock: socket.socket, wanted: str, seen: list[str]) -> str:
    while True:
        message = sock.recv(4096).decode()
        seen.append(message)
        if wanted in message:
            return message


def test_the_kiosk_serves_tells_systemd_and_stops_cleanly(
    tiny_bundle: Path, tmp_path: Path, no_tensorflow: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    config = tmp_path / "kiosk.toml"
    config.write_text(f'bundle = "{tiny_bundle}"\nport = 1\ngrid_size = 3\ncamera = "synthetic://?fps=10"\n')
    env = kiosk_env(no_tensorflow, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
    process = subprocess.Popen(
        [sys.executable, "-m", "atelier", "kiosk", "--config", str(config), "--port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    seen: list[str] = []
    try:
        ready = receive_until(sock, "READY=1", seen)
        url = re.search(r"serving (http://127\.0\.0\.1:\d+/)", ready)
        assert url, ready
        health = httpx.get(url[1] + "healthz", timeout=30)
        assert health.status_code == 200 and health.json()["camera"]["uri"] == "synthetic://?fps=10"
        info = httpx.get(url[1] + "api/info", timeout=30).json()
        assert info["ui"]["grid_size"] == 3  # from the file; --port 0 overrode its port = 1
        designs = httpx.post(url[1] + "api/generate", json={}, timeout=30).json()["designs"]
        assert len(designs) == 3
        receive_until(sock, "WATCHDOG=1", seen)  # healthy: the watchdog is fed
        process.send_signal(signal.SIGTERM)
        receive_until(sock, "STOPPING=1", seen)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "event=ready" in output and "event=stopped" in output
    assert seen.index(next(m for m in seen if "READY=1" in m)) < len(seen) - 1


# `make demo` ------------------------------------------------------------------------------------------------

STAND_IN_ATELIER = """#!/bin/sh
# Stands in for the real commands (training takes minutes): records each call; `train` refuses an --out that
# already holds a run, as trainer/train.py does; `export` writes a manifest; `kiosk` returns at once.
echo "$*" >> calls.log
cmd=$1; out=
while [ $# -gt 0 ]; do [ "$1" = --out ] && out=$2; shift; done
case $cmd in
  train) if [ -e "$out/config.json" ]; then echo "$out already holds a run" >&2; exit 2; fi
         mkdir -p "$out" && echo '{}' > "$out/config.json" ;;
  export) mkdir -p "$out" && echo '{}' > "$out/manifest.json" ;;
esac
"""


def test_make_demo_recovers_from_an_interrupted_quick_demo_training(tmp_path: Path) -> None:
    make = shutil.which("make")
    assert make, "GNU make is needed to test the Makefile"
    repo = Path(__file__).resolve().parents[2]
    for name in ("pyproject.toml", "CMakeLists.txt"):  # what the venv's stamps depend on, written long ago
        (tmp_path / name).write_text("")
        os.utime(tmp_path / name, (1e9, 1e9))
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "atelier").write_text(STAND_IN_ATELIER)
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    for stamp in (".edge-installed", ".dev-installed"):  # the venv is set up
        (tmp_path / "venv" / stamp).write_text("")
    # A quick demo training was interrupted: its run folder holds config.json but no bundle was exported.
    (tmp_path / "build" / "demo-run").mkdir(parents=True)
    (tmp_path / "build" / "demo-run" / "config.json").write_text("{}")
    result = subprocess.run([make, "--no-print-directory", "-f", str(repo / "Makefile"), "-C", str(tmp_path),
                             "demo", "VENV=venv", "PORT=8123"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert [c.split()[0] for c in calls] == ["train", "export", "kiosk"]
    assert "--bundle build/demo-bundle" in calls[-1]
    assert (tmp_path / "build" / "demo-bundle" / "manifest.json").is_file()

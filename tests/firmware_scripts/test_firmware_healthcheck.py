"""healthcheck.sh against a real HTTP server on loopback, and the Chromium command browser.sh builds."""

from __future__ import annotations

import shlex
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_firmware_scripts import run_script


class HealthServer(ThreadingHTTPServer):
    """Answers /healthz with the next status in `statuses` (the last one repeats); 404 elsewhere."""

    daemon_threads = True

    def __init__(self, statuses: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), HealthHandler)
        self.statuses = list(statuses)
        self.paths: list[str] = []
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def next_status(self, path: str) -> int:
        with self.lock:
            self.paths.append(path)
            if path != "/healthz":
                return 404
            return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]


class HealthHandler(BaseHTTPRequestHandler):
    server: HealthServer

    def do_GET(self) -> None:
        status = self.server.next_status(self.path)
        body = b'{"ok": true}' if status == 200 else b'{"ok": false}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:  # keep the test output clean
        pass


@pytest.fixture
def serve() -> Iterator[Callable[..., HealthServer]]:
    servers: list[HealthServer] = []

    def start(*statuses: int) -> HealthServer:
        server = HealthServer(list(statuses))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_200_is_healthy(serve: Callable[..., HealthServer]) -> None:
    server = serve(200)
    result = run_script("healthcheck.sh", "--url", f"http://127.0.0.1:{server.port}/healthz")
    assert result.returncode == 0, result.stderr
    assert "healthy" in result.stdout
    assert server.paths == ["/healthz"]


def test_503_is_unhealthy(serve: Callable[..., HealthServer]) -> None:
    server = serve(503)
    result = run_script("healthcheck.sh", "--url", f"http://127.0.0.1:{server.port}/healthz")
    assert result.returncode == 1
    assert "answered 503" in result.stderr


def test_wrong_path_is_unhealthy(serve: Callable[..., HealthServer]) -> None:
    server = serve(200)
    result = run_script("healthcheck.sh", "--url", f"http://127.0.0.1:{server.port}/nothing-here")
    assert result.returncode == 1
    assert "answered 404" in result.stderr


def test_nothing_listening_is_unreachable() -> None:
    result = run_script("healthcheck.sh", "--url", f"http://127.0.0.1:{free_port()}/healthz")
    assert result.returncode == 3
    assert "unreachable" in result.stderr


def test_a_server_that_never_answers_times_out_as_unreachable() -> None:
    with socket.socket() as listener:  # the kernel accepts the connection; nobody ever reads or writes
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        result = run_script("healthcheck.sh", "--url", f"http://127.0.0.1:{port}/healthz", "--timeout", "1")
    assert result.returncode == 3


def test_wait_retries_until_healthy(serve: Callable[..., HealthServer]) -> None:
    server = serve(503, 503, 200)
    result = run_script("healthcheck.sh", "--url", f"http://127.0.0.1:{server.port}/healthz", "--wait", "30")
    assert result.returncode == 0, result.stderr
    assert server.paths == ["/healthz"] * 3


def test_wait_gives_up_with_the_last_answer(serve: Callable[..., HealthServer]) -> None:
    server = serve(503)
    result = run_script("healthcheck.sh", "--url", f"http://127.0.0.1:{server.port}/healthz", "--wait", "1")
    assert result.returncode == 1
    assert server.paths == ["/healthz"] * 2  # asked once more, a second later, then gave up


def test_host_and_port_come_from_the_kiosk_config(serve: Callable[..., HealthServer], tmp_path: Path) -> None:
    server = serve(200)
    config = tmp_path / "kiosk.toml"
    config.write_text(f'# edited\nhost = "127.0.0.1"\nport = {server.port}\ndelegate = "cpu"\n')
    result = run_script("healthcheck.sh", "--config", config, "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert server.paths == ["/healthz"]


def test_wildcard_host_in_the_config_is_asked_on_loopback(
    serve: Callable[..., HealthServer], tmp_path: Path
) -> None:
    server = serve(503)
    config = tmp_path / "kiosk.toml"
    config.write_text(f'host = "0.0.0.0"\nport = {server.port}\n')
    assert run_script("healthcheck.sh", "--config", config).returncode == 1
    assert server.paths == ["/healthz"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "https://127.0.0.1:8000/healthz"], "plain http"),
        (["--url", "127.0.0.1:8000"], "plain http"),
        (["--url", "http://127.0.0.1:99999/healthz"], "out of range"),
        (["--wait", "soon"], "--wait wants whole seconds"),
        (["--wait", "-1"], "--wait wants whole seconds"),
        (["--timeout", "0"], "--timeout wants whole seconds"),
    ],
)
def test_bad_arguments_are_usage_errors(args: list[str], message: str) -> None:
    result = run_script("healthcheck.sh", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Usage:" in result.stderr


# ---- browser.sh -------------------------------------------------------------------------------------------


def browser_command(*args: str | Path, display: dict[str, str] | None = None) -> list[str]:
    env = {"PATH": "/usr/bin:/bin", **(display or {})}
    result = run_script("browser.sh", *args, "--print-command", env=env)
    assert result.returncode == 0, result.stderr
    return shlex.split(result.stdout)


def test_browser_runs_chromium_in_cage_on_the_kiosk_page(tmp_path: Path) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text('host = "127.0.0.1"\nport = 8123\n')
    command = browser_command("--config", config)
    assert command[:3] == ["cage", "-s", "--"]
    flags = command[4:]
    assert Path(command[3]).name in ("chromium", "chromium-browser")
    for flag in (
        "--kiosk",
        "--app=http://127.0.0.1:8123/",
        "--noerrdialogs",
        "--disable-session-crashed-bubble",
        "--disable-pinch",
        "--overscroll-history-navigation=0",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--user-data-dir=/var/lib/atelier/browser",
    ):
        assert flag in flags, flag


def test_browser_uses_an_existing_display_directly() -> None:
    command = browser_command("--url", "http://127.0.0.1:8000/", display={"WAYLAND_DISPLAY": "wayland-0"})
    assert Path(command[0]).name in ("chromium", "chromium-browser")
    assert "--app=http://127.0.0.1:8000/" in command


def test_browser_defaults_to_the_kiosk_port_without_a_config(tmp_path: Path) -> None:
    command = browser_command("--config", tmp_path / "missing.toml")
    assert "--app=http://127.0.0.1:8000/" in command


def test_browser_refuses_a_non_http_url() -> None:
    result = run_script("browser.sh", "--url", "file:///etc/passwd", "--print-command")
    assert result.returncode == 2
    assert "--url wants an http:// address" in result.stderr


def test_browser_binary_can_be_named(tmp_path: Path) -> None:
    fake = tmp_path / "my-chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    command = browser_command("--url", "http://127.0.0.1:8000/", display={"ATELIER_CHROMIUM": str(fake)})
    assert command[:4] == ["cage", "-s", "--", str(fake)]


def test_browser_without_chromium_says_what_to_do(tmp_path: Path) -> None:
    """A PATH with only what the script itself needs: no chromium, no chromium-browser."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "readlink", "sed", "head"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    result = run_script("browser.sh", "--url", "http://127.0.0.1:8000/", env={"PATH": str(bin_dir)})
    assert result.returncode == 1
    assert "no Chromium found" in result.stderr

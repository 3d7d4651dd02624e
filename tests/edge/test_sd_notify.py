"""edge.sd_notify against a real AF_UNIX datagram socket standing in for systemd's notify socket."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator

import pytest

from edge import sd_notify

RECV_TIMEOUT_S = 10.0  # generous: only bounds a hang, never asserted as a duration


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket at a filesystem path (short: AF_UNIX paths are limited to 107 bytes)."""
    folder = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(RECV_TIMEOUT_S)
    try:
        yield sock, path
    finally:
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket in the abstract namespace; yields it and its systemd '@name' spelling."""
    name = f"atelier-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(RECV_TIMEOUT_S)
    try:
        yield sock, "@" + name
    finally:
        sock.close()


def drain(sock: socket.socket) -> list[str]:
    """Every datagram queued on the socket right now."""
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(RECV_TIMEOUT_S)
    return messages


def recv_until(sock: socket.socket, wanted: str) -> list[str]:
    """Receive datagrams until one equals `wanted` (socket.timeout fails the test if it never comes)."""
    seen = []
    while True:
        message = sock.recv(4096).decode()
        seen.append(message)
        if message == wanted:
            return seen


class HealthProbe:
    """A health callback the test flips, counting the calls made while unhealthy."""

    def __init__(self) -> None:
        self.healthy = True
        self.raise_instead = False
        self.unhealthy_calls = 0
        self._cond = threading.Condition()

    def __call__(self) -> bool:
        with self._cond:
            healthy = self.healthy
            if not healthy:
                self.unhealthy_calls += 1
                self._cond.notify_all()
            if not healthy and self.raise_instead:
                raise RuntimeError("camera thread is stuck")
            return healthy

    def set(self, healthy: bool) -> None:
        with self._cond:
            self.healthy = healthy

    def wait_unhealthy_calls(self, at_least: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.unhealthy_calls >= at_least, RECV_TIMEOUT_S)


def test_every_call_is_a_noop_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify.notify("READY=1") is False
    assert sd_notify.ready("up") is False
    assert sd_notify.watchdog_ping() is False
    assert sd_notify.Watchdog().start() is False


def test_ready_sends_ready_and_a_single_line_status(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    assert sd_notify.ready("serving\nport 8000", env={"NOTIFY_SOCKET": path}) is True
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving port 8000"
    assert sd_notify.status("warming up", env={"NOTIFY_SOCKET": path}) is True
    assert sock.recv(4096) == b"STATUS=warming up"


def test_abstract_socket_names_start_with_at(abstract_socket: tuple[socket.socket, str]) -> None:
    sock, name = abstract_socket
    assert sd_notify.stopping(env={"NOTIFY_SOCKET": name}) is True
    assert sock.recv(4096) == b"STOPPING=1"
    assert sd_notify.watchdog_ping(env={"NOTIFY_SOCKET": name}) is True
    assert sock.recv(4096) == b"WATCHDOG=1"


@pytest.mark.parametrize("bad", ["relative/notify", "vsock:2:1234", "@", "/tmp/no-such-dir-atelier/notify"])
def test_unusable_socket_addresses_return_false_and_log(bad: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edge.sd_notify"):
        assert sd_notify.notify("READY=1", env={"NOTIFY_SOCKET": bad}) is False
    assert any(bad in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("env", "expected_s"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),  # a parent's watchdog
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "thirty"}, None),
        ({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "me"}, None),
        ({}, None),
    ],
)
def test_watchdog_timeout_from_environment(env: dict[str, str], expected_s: float | None) -> None:
    assert sd_notify.watchdog_timeout_s(env) == expected_s


def test_watchdog_pings_only_while_healthy(
    notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ping every 0.1 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    probe = HealthProbe()
    dog = sd_notify.Watchdog(is_healthy=probe)
    try:
        assert dog.start() is True
        assert dog.start() is True  # a second start keeps the one thread
        recv_until(sock, "WATCHDOG=1")
        recv_until(sock, "WATCHDOG=1")

        probe.set(False)
        probe.wait_unhealthy_calls(1)
        drain(sock)  # pings from before the flip, and possibly the status line
        seen_calls = probe.unhealthy_calls
        probe.wait_unhealthy_calls(seen_calls + 3)  # three full ping rounds while unhealthy
        while_unhealthy = drain(sock)
        assert "WATCHDOG=1" not in while_unhealthy

        probe.set(True)
        resumed = recv_until(sock, "WATCHDOG=1")
        assert "STATUS=healthy" in resumed
    finally:
        dog.stop()
    assert not dog.running
    assert dog.pings_sent >= 3  # read after the thread ended: it counts a ping just after sending it


def test_a_raising_health_check_counts_as_unhealthy(
    notify_socket: tuple[socket.socket, str], caplog: pytest.LogCaptureFixture
) -> None:
    sock, path = notify_socket
    probe = HealthProbe()
    probe.raise_instead = True
    probe.set(False)
    dog = sd_notify.Watchdog(is_healthy=probe, interval_s=0.05, env={"NOTIFY_SOCKET": path})
    with caplog.at_level(logging.ERROR, logger="edge.sd_notify"), dog:
        probe.wait_unhealthy_calls(3)  # the thread survives the exceptions and keeps checking
        messages = drain(sock)
        assert "WATCHDOG=1" not in messages
        # The status line went out right after the first failed check, before the second check ran.
        assert "STATUS=unhealthy: watchdog pings withheld" in messages
        assert dog.running
        probe.set(True)
        recv_until(sock, "WATCHDOG=1")
    assert not dog.running
    assert any("camera thread is stuck" in (record.exc_text or "") for record in caplog.records)


def test_watchdog_does_not_start_without_a_watchdog_for_this_process(
    notify_socket: tuple[socket.socket, str],
) -> None:
    _, path = notify_socket
    assert sd_notify.Watchdog(env={"NOTIFY_SOCKET": path}).start() is False
    not_ours = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid() + 1)}
    dog = sd_notify.Watchdog(env=not_ours)
    assert dog.start() is False
    assert not dog.running


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        sd_notify.Watchdog(interval_s=0)

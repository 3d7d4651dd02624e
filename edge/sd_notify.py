"""Tell systemd how the kiosk is doing: a tiny, dependency-free ``sd_notify`` client and a watchdog pinger.

systemd passes a datagram socket address in ``$NOTIFY_SOCKET`` to a ``Type=notify`` service; the service
sends newline-separated ``KEY=VALUE`` assignments to it (``READY=1``, ``STATUS=...``, ``WATCHDOG=1``,
``STOPPING=1``). The address is a filesystem path (``/run/systemd/notify``) or, when it starts with ``@``, a
Linux abstract socket name (the ``@`` stands for a leading NUL byte). With ``WatchdogSec=`` set, systemd also
passes ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``); a service that sends no ``WATCHDOG=1`` within that time is
killed and, with ``Restart=always``, started again. Outside systemd (no ``$NOTIFY_SOCKET``) every call is a
cheap no-op that returns False, so the kiosk calls these unconditionally.

API used by the kiosk server::

    from edge import sd_notify

    dog = sd_notify.Watchdog(is_healthy=server.is_healthy)  # callable -> bool, thread-safe and quick
    ...                                                     # load the bundle, open the camera, bind the port
    sd_notify.ready("serving http://127.0.0.1:8000")        # READY=1 + STATUS=...; After= units start now
    dog.start()                                             # pings WATCHDOG=1 every WATCHDOG_USEC / 2
    ...
    sd_notify.stopping()                                    # STOPPING=1 on a clean shutdown
    dog.stop()

Functions: ``notify(state) -> bool`` (any raw assignments), ``ready(status=None)``, ``status(text)``,
``stopping()``, ``watchdog_ping()``, ``watchdog_timeout_s() -> float | None``. Each returns True when the
message was handed to systemd, False when not running under systemd or the send failed (logged, never raised:
a notification must never take the kiosk down).

``Watchdog`` stops pinging while ``is_healthy()`` returns False or raises, so a wedged kiosk (camera thread
stuck, model loop dead) is restarted by systemd instead of showing a frozen page; it resumes when healthy
again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

_SEND_TIMEOUT_S = 1.0

__all__ = [
    "Watchdog",
    "notify",
    "ready",
    "status",
    "stopping",
    "watchdog_ping",
    "watchdog_timeout_s",
]


def _socket_address(raw: str) -> str | None:
    """Turn ``$NOTIFY_SOCKET`` into an AF_UNIX address, or None when it is not one we can use."""
    if raw.startswith("/"):
        return raw
    if raw.startswith("@") and len(raw) > 1:
        # Abstract namespace: the kernel name starts with a NUL byte, which systemd spells '@'.
        return "\0" + raw[1:]
    return None


def notify(state: str, env: Mapping[str, str] | None = None) -> bool:
    """Send raw ``sd_notify`` assignments (e.g. ``"READY=1\\nSTATUS=warming up"``) to systemd.

    Args:
        state: One or more ``KEY=VALUE`` lines, newline-separated, as in sd_notify(3).
        env: Environment to read ``NOTIFY_SOCKET`` from; defaults to ``os.environ``.

    Returns:
        True when the datagram was sent; False when ``NOTIFY_SOCKET`` is unset (not under systemd), holds an
        address this client does not support (for example ``vsock:``), or the send failed (logged).
    """
    environ = os.environ if env is None else env
    raw = environ.get("NOTIFY_SOCKET", "")
    if not raw:
        return False
    address = _socket_address(raw)
    if address is None:
        log.warning("NOTIFY_SOCKET=%r is not a unix socket path or @abstract name; not notifying", raw)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # A datagram send blocks while the receiver's queue is full: never let that hang the kiosk.
            sock.settimeout(_SEND_TIMEOUT_S)
            sock.sendto(state.encode("utf-8"), address)
    except OSError as exc:
        log.warning("sd_notify to %r failed: %s", raw, exc)
        return False
    return True


def ready(status_text: str | None = None, env: Mapping[str, str] | None = None) -> bool:
    """Tell systemd start-up is finished (``READY=1``), optionally with a status line.

    Args:
        status_text: Shown by ``systemctl status``; newlines are replaced by spaces.
        env: Environment to read ``NOTIFY_SOCKET`` from; defaults to ``os.environ``.

    Returns:
        True when systemd was told.
    """
    message = "READY=1"
    if status_text:
        message += "\nSTATUS=" + _one_line(status_text)
    return notify(message, env)


def status(text: str, env: Mapping[str, str] | None = None) -> bool:
    """Set the free-form status line ``systemctl status`` shows (``STATUS=...``).

    Args:
        text: The status; newlines are replaced by spaces.
        env: Environment to read ``NOTIFY_SOCKET`` from; defaults to ``os.environ``.

    Returns:
        True when systemd was told.
    """
    return notify("STATUS=" + _one_line(text), env)


def stopping(env: Mapping[str, str] | None = None) -> bool:
    """Tell systemd a clean shutdown has begun (``STOPPING=1``).

    Args:
        env: Environment to read ``NOTIFY_SOCKET`` from; defaults to ``os.environ``.

    Returns:
        True when systemd was told.
    """
    return notify("STOPPING=1", env)


def watchdog_ping(env: Mapping[str, str] | None = None) -> bool:
    """Send one ``WATCHDOG=1`` keep-alive.

    Args:
        env: Environment to read ``NOTIFY_SOCKET`` from; defaults to ``os.environ``.

    Returns:
        True when systemd was told.
    """
    return notify("WATCHDOG=1", env)


def watchdog_timeout_s(env: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout systemd set for this process, in seconds, or None when there is none.

    Reads ``$WATCHDOG_USEC``; when ``$WATCHDOG_PID`` is set and names another process (a child that inherited
    the environment), the watchdog is not ours and None is returned, as sd_watchdog_enabled(3) does.

    Args:
        env: Environment to read from; defaults to ``os.environ``.

    Returns:
        The timeout in seconds, or None.
    """
    environ = os.environ if env is None else env
    raw_usec = environ.get("WATCHDOG_USEC", "")
    raw_pid = environ.get("WATCHDOG_PID", "")
    if not raw_usec:
        return None
    try:
        usec = int(raw_usec)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not an integer; watchdog disabled", raw_usec)
        return None
    if usec <= 0:
        return None
    if raw_pid:
        try:
            pid = int(raw_pid)
        except ValueError:
            log.warning("WATCHDOG_PID=%r is not an integer; watchdog disabled", raw_pid)
            return None
        if pid != os.getpid():
            return None
    return usec / 1_000_000


def _always_healthy() -> bool:
    return True


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


class Watchdog:
    """Pings ``WATCHDOG=1`` from a daemon thread at half the watchdog timeout while the app is healthy.

    Example::

        dog = Watchdog(is_healthy=lambda: server.last_frame_age_s() < 5.0)
        if not dog.start():
            log.info("no systemd watchdog; running without one")
        ...
        dog.stop()

    Args:
        is_healthy: Called from the watchdog thread before each ping; must be thread-safe and return quickly.
            While it returns False (or raises, which is logged), no ping is sent, so systemd restarts a wedged
            kiosk once ``WatchdogSec`` runs out.
        interval_s: Ping interval; defaults to half of ``$WATCHDOG_USEC`` (the margin sd_watchdog_enabled(3)
            recommends). Must be positive when given.
        env: Environment to read ``NOTIFY_SOCKET``/``WATCHDOG_USEC``/``WATCHDOG_PID`` from; defaults to
            ``os.environ`` (read at ``start()``).
    """

    def __init__(
        self,
        is_healthy: Callable[[], bool] = _always_healthy,
        *,
        interval_s: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if interval_s is not None and interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self._is_healthy = is_healthy
        self._interval_override_s = interval_s
        self._env = env
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.pings_sent = 0  # WATCHDOG=1 datagrams handed to systemd (for logs and tests)

    @property
    def running(self) -> bool:
        """True while the pinging thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> bool:
        """Start pinging if systemd asked for a watchdog (or ``interval_s`` was given).

        Returns:
            True when the pinging thread runs (also when it already did); False when there is no watchdog to
            feed (no ``$WATCHDOG_USEC`` for this process and no ``interval_s``) or no ``$NOTIFY_SOCKET``.
        """
        with self._lock:
            if self.running:
                return True
            environ = dict(os.environ if self._env is None else self._env)
            if not environ.get("NOTIFY_SOCKET"):
                log.debug("NOTIFY_SOCKET unset: not under systemd, watchdog not started")
                return False
            interval_s = self._interval_override_s
            if interval_s is None:
                timeout_s = watchdog_timeout_s(environ)
                if timeout_s is None:
                    log.debug("no systemd watchdog for this process (WATCHDOG_USEC unset or not ours)")
                    return False
                interval_s = timeout_s / 2
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, args=(interval_s, environ), name="sd-watchdog", daemon=True
            )
            self._thread.start()
            log.info("systemd watchdog: pinging every %.3g s while healthy", interval_s)
            return True

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop pinging and wait for the thread to end (at most ``timeout_s``)."""
        with self._lock:
            thread = self._thread
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def __enter__(self) -> Watchdog:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _check_health(self) -> bool:
        try:
            return bool(self._is_healthy())
        except Exception:  # the probe is app code: a crash in it means "not healthy", not a dead thread
            log.exception("watchdog health check raised; treating the kiosk as unhealthy")
            return False

    def _run(self, interval_s: float, environ: Mapping[str, str]) -> None:
        healthy_before = True
        while not self._stop.is_set():
            healthy = self._check_health()
            if healthy:
                if not healthy_before:
                    log.warning("kiosk healthy again: resuming watchdog pings")
                    status("healthy", environ)
                if watchdog_ping(environ):
                    self.pings_sent += 1
            elif healthy_before:
                log.error("kiosk unhealthy: withholding watchdog pings so systemd restarts it if this lasts")
                status("unhealthy: watchdog pings withheld", environ)
            healthy_before = healthy
            self._stop.wait(interval_s)

"""Run the kiosk: verify the bundle, warm the models up, bind the port, serve with uvicorn, tell systemd.

`serve(config)` is what `atelier kiosk` calls; `BackgroundServer` runs the same app in a thread on a free
loopback port (tests and benchmarks).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from edge import sd_notify
from edge.bundle import load_bundle
from edge.errors import UserError
from edge.kiosk.app import create_app
from edge.kiosk.config import KioskConfig
from edge.kiosk.service import KioskService

log = logging.getLogger(__name__)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one).

    Raises:
        UserError: the address cannot be bound (in use, not an address of this machine, no permission).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserError(f"cannot resolve --host {host!r}: {exc}") from None
    family, _, proto, _, address = infos[0]
    # proto must be IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY on accepted connections only then, and
    # without it a keep-alive response written in two parts waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port "
                        "or stop what is using it") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """The http:// URL of a listening socket (IPv6 addresses in brackets)."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class _Server(uvicorn.Server):
    """uvicorn's server with hooks once it listens (READY=1 waits for that) and when shutdown begins."""

    def __init__(
        self,
        config: uvicorn.Config,
        on_started: Callable[[], None],
        on_stopping: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(config)
        self._on_started = on_started
        self._on_stopping = on_stopping

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_stopping()
        await super().shutdown(sockets)


class _CoalescingTransport:
    """A connection's transport that sends a response's head and body in one write.

    uvicorn writes the status line and headers as soon as the app starts its response, then the body: two
    send() calls, two TCP segments and two wake-ups of the client for every small JSON reply. Here a write is
    held until the next one joins it (a plain response writes its body in the same event-loop step), or until
    the loop's next turn at the latest, so a streamed response's head is never held longer than that.
    Everything else is the real transport's.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            held, self._held = self._held, None
            self._transport.write(held + data)

    def writelines(self, chunks: Iterable[bytes]) -> None:
        self.write(b"".join(chunks))

    def flush(self) -> None:
        """Send what is held (nothing followed it in time)."""
        if self._held is not None:
            held, self._held = self._held, None
            self._transport.write(held)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)


class _HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a `_CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]


def _uvicorn_config(app: object) -> uvicorn.Config:
    # Our own access log (structured, in AccessLogMiddleware); endless MJPEG streams get 2 s to end.
    # No proxy sits in front of a kiosk (it binds loopback), so no X-Forwarded-* handling on every request.
    return uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=2,
                          server_header=False, proxy_headers=False, http=_HttpProtocol)


def serve(config: KioskConfig) -> int:
    """Serve the kiosk until SIGINT/SIGTERM.

    The bundle is verified (`load_bundle`: format, fields, sha256 of every file) and every model warmed up
    before the port opens, so the server never serves an unverified model and READY=1 means designs can be
    made.

    Args:
        config: the resolved settings.

    Returns:
        The process exit status (0 after a clean shutdown).

    Raises:
        UserError: a missing or corrupt bundle, a bad camera URI, a port that cannot be bound.
    """
    t0 = time.perf_counter()
    if not config.bundle.exists():
        raise UserError(f"no model bundle at {config.bundle}: pass --bundle DIR (a folder made by "
                        "`atelier export`) or set bundle = ... in the kiosk config")
    bundle = load_bundle(config.bundle)
    service = KioskService(config, bundle)
    sock = bind_socket(config.host, config.port)
    url = url_of(sock)
    dog = sd_notify.Watchdog(is_healthy=service.healthy)
    try:
        service.start()
        app = create_app(service, manage_service=False)

        def started() -> None:
            log.info("event=ready url=%s model_id=%s model=%s startup_s=%.2f", url, bundle.model_id,
                     bundle.name, time.perf_counter() - t0)
            sd_notify.ready(f"serving {url} (model {bundle.model_id})")
            dog.start()

        def stopping() -> None:
            log.info("event=stopping")
            sd_notify.stopping()
            dog.stop()

        server = _Server(_uvicorn_config(app), started, stopping)
        # uvicorn re-raises the signal that stopped it once it is done; with the default SIGTERM action
        # that would kill the process before the worker and camera are stopped. Note it and carry on.
        previous = {sig: signal.signal(sig, _note_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            server.run(sockets=[sock])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        dog.stop()
        service.stop()
        sock.close()
    log.info("event=stopped")
    return 0


def _note_signal(signum: int, _frame: object) -> None:
    log.info("event=signal signal=%s", signal.Signals(signum).name)


class BackgroundServer:
    """The kiosk app served by uvicorn in a background thread on a loopback port (tests, benchmarks).

    Args:
        service: a KioskService (started and stopped with the server).
        host: address to bind; port 0 picks a free one.
    """

    def __init__(self, service: KioskService, host: str = "127.0.0.1", port: int = 0) -> None:
        self.service = service
        self._sock = bind_socket(host, port)
        self.url = url_of(self._sock).rstrip("/")
        self._server = _Server(_uvicorn_config(create_app(service)), lambda: None)
        self._thread = threading.Thread(target=self._run, name="kiosk-server", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # surfaced by start()/stop() in the calling thread
            self._error = exc

    def start(self, timeout_s: float = 60.0) -> BackgroundServer:
        """Start serving; returns once the server accepts requests."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"kiosk server failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("kiosk server did not start in time")
            time.sleep(0.02)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the server to exit and wait for it."""
        self._server.should_exit = True
        self._thread.join(timeout_s)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

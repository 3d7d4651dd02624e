"""Fixture: real kiosk servers on free loopback ports (the one way tests start a kiosk in-process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.bundle import load_bundle
from edge.kiosk.camera import CameraFeed
from edge.kiosk.config import KioskConfig
from edge.kiosk.server import BackgroundServer
from edge.kiosk.service import KioskService


def start_kiosk(bundle: Path, *, camera: CameraFeed | str = "", **settings: object) -> BackgroundServer:
    """Serve `bundle` on 127.0.0.1 (any free port) with `KioskConfig(**settings)`; returns once it answers.

    `camera` is a camera URI or a ready CameraFeed (a camera we lack, scripted by the test). Stop it with
    `.stop()`, or use the `kiosk_server` fixture, which stops every kiosk it started.
    """
    uri = camera if isinstance(camera, str) else ""
    feed = None if isinstance(camera, str) else camera
    config = KioskConfig(bundle=bundle, port=0, camera=uri, **settings)  # type: ignore[arg-type]
    return BackgroundServer(KioskService(config, load_bundle(bundle), camera=feed)).start()


@pytest.fixture
def kiosk_server() -> Iterator[Callable[..., BackgroundServer]]:
    """`start_kiosk` for one test: every kiosk started through it is stopped when the test ends."""
    started: list[BackgroundServer] = []

    def start(bundle: Path, **kwargs: object) -> BackgroundServer:
        server = start_kiosk(bundle, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()

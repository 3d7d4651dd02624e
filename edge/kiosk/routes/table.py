"""`Routes`: the one registration path every route group of the kiosk goes through (see `edge.kiosk.routes`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from edge.kiosk.json_routes import Handler, JsonRoute
from edge.kiosk.service import KioskService


@dataclass
class Routes:
    """What route groups register into (see `edge.kiosk.routes`)."""

    app: FastAPI
    service: KioskService
    lean: dict[str, JsonRoute] = field(default_factory=dict)  # exact path -> hot JSON POST route
    large_bodies: dict[str, int] = field(default_factory=dict)  # exact path -> body limit above the default
    on_start: list[Callable[[], None]] = field(default_factory=list)  # run in a thread at app start, in order
    on_stop: list[Callable[[], None]] = field(default_factory=list)  # run in a thread at app stop, reversed

    def get(self, path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A GET route on the FastAPI app (HEAD is answered by `edge.kiosk.middleware.HeadAsGet`)."""
        return self.app.get(path, **kwargs)

    def post_json(self, path: str, body: type[BaseModel], handler: Handler) -> None:
        """A hot JSON POST on the lean path: `body` validates the request (empty = {}), `handler` answers."""
        if path in self.lean:
            raise ValueError(f"{path} is registered twice")
        self.lean[path] = JsonRoute(body, handler)

    def allow_body(self, path: str, max_bytes: int) -> None:
        """Let POSTs to exactly `path` send up to `max_bytes` (the default limit is the config's)."""
        self.large_bodies[path] = max_bytes

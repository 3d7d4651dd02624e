"""A lean ASGI path for the kiosk's hot JSON POST routes (generate, neighbours, mix).

Every tap on the page is one of these requests, and under load they arrive dozens at a time. FastAPI's
per-request machinery (routing, dependency solving, request object, its middleware layers) cost about as much
CPU as the rest of the request together, measured with bench/kiosk.py (16 clients asking for one design each:
p50 27 ms through FastAPI, 25 ms on this path, against 21 ms for the bare interpreter). On a 2-core kiosk that
CPU is taken from the interpreter, so these routes skip it: the body is read here (the body limit and access
log still wrap it), validated by the same pydantic models in one `model_validate_json` pass, and the handler's
dict is sent as JSON. Every other path falls through to the FastAPI app.

Errors are answered as the rest of the API answers them: ``{"error": "<what to fix>"}`` with 400 for a
malformed body or a bad field, the `ApiError`'s status, 405 for another method, 413 from the body limit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge.kiosk.api_error import ApiError

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Handler = Callable[[Any], Awaitable[Mapping[str, object]]]

_JSON_HEADERS = [(b"content-type", b"application/json")]


@dataclass(frozen=True)
class JsonRoute:
    """POST `path` with a JSON body validated by `body` (an empty body counts as {}), answered by `handler`."""

    body: type[BaseModel]
    handler: Handler


def validation_message(errors: Sequence[Mapping[str, Any]]) -> str:
    """One line a client can act on from pydantic's (or FastAPI's) validation errors."""
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        kind = err.get("type")
        if kind == "json_invalid":
            return f"malformed JSON body: {err.get('ctx', {}).get('error', err.get('msg', 'cannot parse it'))}"
        if not loc and kind in ("model_type", "model_attributes_type", "dict_type"):
            return "the body must be a JSON object, e.g. {\"n\": 8}"
        if kind == "extra_forbidden":
            parts.append(f"unknown field {'.'.join(loc)!r}")
            continue
        where = ".".join(loc) or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def encode_json(content: object) -> bytes:
    """JSON as Starlette's JSONResponse renders it (UTF-8, compact, no NaN)."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


async def send_json(send: Send, status: int, content: object, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = encode_json(content)
    await send({"type": "http.response.start", "status": status,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class JsonRoutes:
    """ASGI: the given POST routes answered here, everything else passed to `app`.

    Args:
        app: the app behind (FastAPI: the page, GET routes, staff routes, lifespan).
        routes: exact path -> route.
    """

    def __init__(self, app: ASGIApp, routes: Mapping[str, JsonRoute]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await send_json(send, 405, {"error": f"{scope['method']} is not allowed here: POST a JSON body"},
                            [(b"allow", b"POST")])
            return
        try:
            body = await _read_body(receive)
            if body is None:  # the client went away
                return
            params = route.body.model_validate_json(body or b"{}")
            content = await route.handler(params)
        except ValidationError as exc:
            await send_json(send, 400, {"error": validation_message(exc.errors())})
        except ApiError as exc:
            await send_json(send, exc.status, {"error": exc.message})
        except StarletteHTTPException as exc:  # the body limit, while streaming
            await send_json(send, exc.status_code, {"error": str(exc.detail)})
        except Exception as exc:  # a bug: answered (the access log records the 500 for /healthz), not hidden
            log.exception("event=route_failed path=%s", scope["path"])
            await send_json(send, 500, {"error": f"internal error ({type(exc).__name__}); see the kiosk log"})
        else:
            await send_json(send, 200, content)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)

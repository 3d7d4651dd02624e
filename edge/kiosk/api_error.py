"""The one exception the kiosk's routes answer with a 4xx/5xx status and ``{"error": "<what to fix>"}``."""

from __future__ import annotations


class ApiError(Exception):
    """A request the kiosk refuses; `status` is the HTTP status, the message tells the client what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

"""Running a coroutine from a test: on a fresh event loop in a thread of its own.

The session's Playwright browser (fixtures_browser) keeps an event loop running in the main thread, where
`asyncio.run` refuses to start, so tests that come after it cannot use `asyncio.run` directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
RunAsync = Callable[[Callable[[], Coroutine[Any, Any, T]]], T]


@pytest.fixture
def run_async() -> RunAsync:
    def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
        with ThreadPoolExecutor(1, thread_name_prefix="test-event-loop") as pool:
            return pool.submit(lambda: asyncio.run(main())).result(timeout=600)

    return run

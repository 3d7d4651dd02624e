"""A request in the worker: the job (its latents, its pictures as they fill in, its future) and its parts."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    """One request: its latents, its pictures as the parts fill them in, and how it is answered."""

    z: np.ndarray
    class_ids: list[int] | None
    exact: bool
    post: Callable[[np.ndarray], Any] | None = None
    future: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)
    waiter: asyncio.Future[Any] | None = None  # an asyncio caller's future, resolved on its loop
    parts_left: int = 1
    started: bool = False  # a part was taken: the future is running and can no longer be cancelled
    dropped: bool = False  # cancelled while queued: its parts are skipped
    images: np.ndarray | None = None
    error: BaseException | None = None


@dataclass(eq=False)
class Part:
    """Rows start:stop of a job, run by one lane (the whole job on the one-thread worker)."""

    job: Job
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start

    def classes(self) -> list[int] | None:
        ids = self.job.class_ids
        return None if ids is None else ids[self.start : self.stop]


def answer(job: Job) -> None:
    """Resolve a finished job's future with its pictures, its `post` of them, or its error; wake its caller."""
    if job.error is None:
        assert job.images is not None
        try:
            job.future.set_result(job.images if job.post is None else job.post(job.images))
        except Exception as exc:  # only this request fails
            log.exception("event=post_processing_failed rows=%d", len(job.z))
            job.future.set_exception(exc)
    else:
        job.future.set_exception(job.error)
    if job.waiter is not None:
        try:
            job.waiter.get_loop().call_soon_threadsafe(_wake, job)
        except RuntimeError:  # the caller's event loop has closed: nobody is waiting
            pass


def _wake(job: Job) -> None:
    """On the caller's event loop: pass the job's outcome to its waiter (unless the caller gave up)."""
    waiter = job.waiter
    if waiter is None or waiter.done():
        return
    exc = job.future.exception()
    if exc is not None:
        waiter.set_exception(exc)
    else:
        waiter.set_result(job.future.result())

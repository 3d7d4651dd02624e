"""The queue machine every generation worker shares: jobs split into parts, threads, futures and answers.

A request is a job of n designs, split into parts (rows start:stop) that the worker's threads take off one queue.
What a thread takes and with which interpreter it runs it is the policy's (`edge.kiosk.worker.lanes`,
`edge.kiosk.worker.batching`): the hooks `_may_take`, `_take_more`, `_begin`, `_end` and `_make`.

A request's `post` (PNG encoding) runs in the thread that finishes its last part, once that thread counts as
idle again, and an asyncio caller is woken with one `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edge.bundle import Bundle
from edge.kiosk.prometheus import KioskMetrics
from edge.kiosk.worker.jobs import Job, Part, answer

log = logging.getLogger(__name__)

# A batch still running after this long means the interpreter is wedged: /healthz and the watchdog say so.
STUCK_AFTER_S = 30.0


class WorkerBusyError(RuntimeError):
    """The queue is full: the kiosk is overloaded (the API answers 503)."""


class WorkerStoppedError(RuntimeError):
    """The worker is not running (shutting down, or it died)."""


class GenerationWorker:
    """The shared queue machine; a policy subclass says what a thread takes and how it runs it.

    Args:
        bundle: the verified bundle.
        generators: batch size -> the interpreter-backed generator for it (the canonical batch included).
        threads: serving threads.
        queue_limit: requests waiting before `submit` raises WorkerBusyError.
        metrics: where latencies and counts are recorded.
    """

    def __init__(
        self,
        bundle: Bundle,
        generators: dict[int, Any],
        *,
        threads: int,
        queue_limit: int = 64,
        metrics: KioskMetrics | None = None,
    ) -> None:
        self.bundle = bundle
        self.metrics = metrics or KioskMetrics()
        self._generators = generators
        self._thread_count = threads
        self._parts: collections.deque[Part] = collections.deque()
        self._cv = threading.Condition()
        self._queued_jobs = 0  # jobs with a part not yet taken (what queue_limit bounds)
        self._queue_limit = queue_limit
        self._running: dict[int, float] = {}  # thread index -> monotonic start of the part it runs
        self._latency_s: dict[int, float] = {}
        self._threads: list[threading.Thread] = []
        self._last_error: str | None = None
        self._stopping = False
        self.batches_run = 0

    # The policy's hooks (called under the lock unless said otherwise) ----------------------------------

    def _parts_per_job(self, n: int) -> int:
        """How many parts a job of n designs is split into."""
        return 1

    def _may_take(self) -> bool:
        """Whether a thread may take parts now (something is queued and the policy lets it)."""
        return bool(self._parts)

    def _take_more(self, taken: list[Part], rows: int) -> bool:
        """Whether a thread that took `taken` (`rows` designs) takes one more part."""
        return not taken

    def _begin(self, parts: list[Part]) -> bool:
        """A thread took `parts`; returns whether they run solo (the lanes' lone-design path)."""
        return False

    def _end(self, solo: bool) -> None:
        """A thread finished parts `_begin` answered `solo` for."""

    def _make(self, z: np.ndarray, classes: list[int] | None, exact: bool, k: int, solo: bool) -> np.ndarray:
        """Run the pictures of `z` on thread k (outside the lock)."""
        raise NotImplementedError

    def _warm_extra(self) -> None:
        """Warm interpreters beyond `generators` (lanes)."""

    @property
    def backend(self) -> str:
        """The interpreter runtime in use (ai_edge_litert, tflite_runtime or tensorflow)."""
        gen = self._generators[self.canonical_batch]
        return str(getattr(gen, "backend", "unknown"))

    @property
    def canonical_batch(self) -> int:
        """The batch size of the model every exact design is made with (the bundle's smallest)."""
        return min(self.bundle.batches)

    @property
    def lanes(self) -> int:
        """Lanes in use (0: one thread drains the queue into batches)."""
        return 0

    def sample_latents(self, n: int, seed: int) -> np.ndarray:
        """The model's prior: float32 (n, z_dim) from `np.random.default_rng(seed)` (DesignGenerator's)."""
        return self._generators[self.canonical_batch].sample_latents(n, seed)

    def start(self) -> None:
        """Warm every interpreter up (measuring the latencies batch planning uses) and start the threads."""
        for batch, gen in self._generators.items():
            self._latency_s[batch] = warm(gen, batch)
        self._warm_extra()
        log.info("event=worker_warm lanes=%d latency_ms=%s", self.lanes,
                 {b: round(t * 1000, 2) for b, t in sorted(self._latency_s.items())})
        for k in range(self._thread_count):
            thread = threading.Thread(target=self._serve, args=(k,), name=f"generation-{k}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish the requests queued so far, then stop (new ones are refused); any still queued after
        `timeout_s` fail with WorkerStoppedError, except those cancelled meanwhile. A thread still busy then
        ends after its part."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._cv:
            left, self._parts = list(self._parts), collections.deque()
        stopped = WorkerStoppedError("kiosk is shutting down")
        for part in left:
            if self._part_done(part, stopped):
                answer(part.job)

    def healthy(self) -> bool:
        """True while every thread runs and none has been on one part for more than STUCK_AFTER_S."""
        busy = self._busy_s()
        return self._alive() and (busy is None or busy < STUCK_AFTER_S)

    def status(self) -> dict[str, object]:
        """Queue depth, liveness and the latencies measured at warm-up (for /healthz)."""
        busy = self._busy_s()
        return {
            "alive": self._alive(),
            "healthy": self.healthy(),
            "lanes": self.lanes,
            "queued": self._queued_jobs,
            "busy_s": None if busy is None else round(busy, 3),
            "batches_run": self.batches_run,
            "warm_latency_ms": {str(b): round(t * 1000, 3) for b, t in sorted(self._latency_s.items())},
            "last_error": self._last_error,
        }

    def _alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def _busy_s(self) -> float | None:
        """Seconds the longest-running part has been running (None when every thread is idle)."""
        starts = list(self._running.values())
        return time.monotonic() - min(starts) if starts else None

    def submit(
        self, z: np.ndarray, class_ids: Sequence[int] | None = None, *, exact: bool = True,
        post: Callable[[np.ndarray], Any] | None = None,
    ) -> concurrent.futures.Future:
        """Queue designs for generation.

        Args:
            z: float32 (n, z_dim) latents.
            class_ids: one class id per row for a conditional model, None otherwise.
            exact: make them with the canonical model (pictures that must match their design ID bit for bit);
                False lets the one-thread worker use whichever batch size is quickest (attract-mode frames;
                lanes always make exact pictures).
            post: run on the pictures in a worker thread before the future is resolved (e.g. PNG encoding:
                it saves the caller a second thread hop); its result is the future's, its exception the future's.

        Returns:
            A future of uint8 (n, H, W, 3) RGB pictures, or of what `post` made of them.

        Raises:
            WorkerBusyError: the queue is full.
            WorkerStoppedError: the worker is not running.
        """
        return self._submit(z, class_ids, exact, post).future

    async def generate(
        self, z: np.ndarray, class_ids: Sequence[int] | None = None, *, exact: bool = True,
        post: Callable[[np.ndarray], Any] | None = None,
    ) -> Any:
        """`submit` for async code: awaits the pictures (or `post`'s result) without blocking the event loop.

        A cancelled caller (its client went away) takes its request off the queue if it has not started.
        """
        t0 = time.perf_counter()
        job = self._submit(z, class_ids, exact, post, waiter=asyncio.get_running_loop().create_future())
        assert job.waiter is not None
        try:
            result = await job.waiter
        except asyncio.CancelledError:
            job.future.cancel()  # refused once a part has started: that part's result is dropped
            raise
        self.metrics.request_seconds.observe(time.perf_counter() - t0)
        return result

    def _submit(
        self, z: np.ndarray, class_ids: Sequence[int] | None, exact: bool,
        post: Callable[[np.ndarray], Any] | None, waiter: asyncio.Future[Any] | None = None,
    ) -> Job:
        """Queue a job (one part per lane); the job, whose future (or waiter) gets the outcome."""
        job = Job(np.asarray(z, dtype=np.float32), None if class_ids is None else list(class_ids), exact, post,
                   waiter=waiter)
        n = len(job.z)
        if n == 0:
            raise ValueError("no latents to generate from")
        k = self._parts_per_job(n)
        bounds = [round(i * n / k) for i in range(k + 1)]
        job.parts_left = k
        with self._cv:
            if self._stopping or not self._alive():
                raise WorkerStoppedError("the generation worker is not running")
            if self._queued_jobs >= self._queue_limit:
                raise WorkerBusyError("the kiosk is busy; try again in a moment")
            self._queued_jobs += 1
            self._parts.extend(Part(job, a, b) for a, b in itertools.pairwise(bounds))
            self._cv.notify(k)
        return job

    # The threads -----------------------------------------------------------------------------------------------

    def _serve(self, k: int) -> None:
        while True:
            with self._cv:
                while not self._may_take():
                    if self._stopping and not self._parts:
                        return
                    self._cv.wait()
                parts = self._take()
                if not parts:  # all cancelled while queued
                    continue
                solo = self._begin(parts)
                self._running[k] = time.monotonic()
            finished: list[Job] = []
            try:
                finished = self._run(parts, k, solo)
            finally:
                with self._cv:
                    del self._running[k]
                    self.batches_run += 1
                    self._end(solo)
            for job in finished:  # after this thread counts as idle: an answer can bring the next request
                answer(job)

    def _take(self) -> list[Part]:
        """Under the lock: the parts the policy takes (`_take_more`), started; parts of requests cancelled while
        queued are dropped."""
        taken: list[Part] = []
        rows = 0
        while self._parts and self._take_more(taken, rows):
            part = self._parts.popleft()
            self._start(part.job)
            if part.job.dropped:
                continue
            taken.append(part)
            rows += part.rows
        return taken

    def _start(self, job: Job) -> None:
        """Under the lock, at a job's first part taken (or failed by stop): it leaves the queue count and its
        future runs, or it is dropped if it was cancelled while queued."""
        if not (job.started or job.dropped):
            self._queued_jobs -= 1
            job.started = job.future.set_running_or_notify_cancel()
            job.dropped = not job.started

    def _run(self, parts: list[Part], k: int, solo: bool) -> list[Job]:
        """Generate the parts' designs; the jobs this finished (to be answered)."""
        t0 = time.perf_counter()
        rows = 0
        finished: list[Job] = []
        for exact in (True, False):
            group = [p for p in parts if p.job.exact == exact]
            if not group:
                continue
            z = np.concatenate([p.job.z[p.start : p.stop] for p in group])
            classes = None if group[0].job.class_ids is None else [c for p in group for c in p.classes() or []]
            try:
                images = self._make(z, classes, exact, k, solo)
            except Exception as exc:  # fail these requests, keep the worker alive for the next ones
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.exception("event=generation_failed rows=%d", len(z))
                finished += [p.job for p in group if self._part_done(p, exc)]
                continue
            rows += len(z)
            offsets = np.cumsum([0, *(p.rows for p in group)])
            for p, a, b in zip(group, offsets[:-1], offsets[1:], strict=True):
                if self._part_done(p, None, images[a:b]):
                    finished.append(p.job)
        elapsed = time.perf_counter() - t0
        self.metrics.generation_seconds.observe(elapsed)
        self.metrics.batch_designs.observe(rows)
        self.metrics.designs_generated.inc(rows)
        log.debug("event=batch thread=%d parts=%d rows=%d solo=%s ms=%.2f", k, len(parts), rows, solo,
                  elapsed * 1000)
        return finished

    def _part_done(self, part: Part, error: BaseException | None, images: np.ndarray | None = None) -> bool:
        """Record a part's pictures (or its failure); True if that finished its job, which the caller answers."""
        job = part.job
        if images is not None:
            if job.images is None and part.rows == len(job.z):
                job.images = images
            else:
                with self._cv:
                    if job.images is None:
                        job.images = np.empty((len(job.z), *images.shape[1:]), images.dtype)
                job.images[part.start : part.stop] = images
        with self._cv:
            job.error = job.error or error
            job.parts_left -= 1
            self._start(job)  # a no-op unless stop gave up before any of its parts ran
            return job.parts_left == 0 and job.started


def warm(gen: Any, batch: int) -> float:
    """Three calls of a generator on a full batch; the median seconds."""
    z = gen.sample_latents(batch, 0)
    classes = [0] * batch if gen.bundle.conditional else None
    timings = []
    for _ in range(3):
        t0 = time.perf_counter()
        gen.generate(z, classes)
        timings.append(time.perf_counter() - t0)
    return float(np.median(timings))

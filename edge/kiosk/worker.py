"""The generation worker: threads that own the interpreters, so the event loop never waits on a model.

Requests are queued (bounded: a full queue is refused, never grown) and run by the worker's threads.

Two ways to run, chosen at start:
- lanes (the CPU delegate with two or more threads, the default): one thread per CPU thread ("lane"), each with
  its own single-threaded interpreter of the bundle's *canonical* model (its smallest batch, one design per
  row). A request is split into one part per lane, and every lane takes the next part off the queue as soon as
  it is done with its own: nothing waits for a whole batch to end, so under load every core keeps generating.
  On a 2-core CPU two 1-thread interpreters make more designs per second than one 2-thread interpreter, whose
  threads wait on each other for a model this small. A lone design on a quiet kiosk (its request and the one
  before found every lane idle and nothing queued) runs on a multi-threaded interpreter instead, the lowest
  latency, while the other lanes wait. XNNPACK splits work between threads by output tiles, so neither the
  lane nor the thread count changes a pixel (a test checks it): every design is made by the canonical model
  and matches its design ID bit for bit;
- one thread (other delegates, or a single thread): it drains whatever is queued into one batch. Two paths,
  because XNNPACK's int8 kernels for batch 1 and batch 8 can round a few pixels differently (measured here: up
  to 3 levels on 0.3 % of the pixels of the tiny model) and a design ID must regenerate bit-exactly:
  - exact (designs with an ID: grid, neighbours, mix, saved PNGs): the canonical model, one design per row;
  - fast (attract-mode walk frames, which are shown once and never saved): split between the bundle's batch
    sizes by the latencies measured at warm-up (e.g. 11 frames = one batch-8 call + three batch-1 calls, or two
    batch-8 calls, whichever is quicker).

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
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.bundle import Bundle
from edge.kiosk.metrics import KioskMetrics

log = logging.getLogger(__name__)

# A batch still running after this long means the interpreter is wedged: /healthz and the watchdog say so.
STUCK_AFTER_S = 30.0


class WorkerBusyError(RuntimeError):
    """The queue is full: the kiosk is overloaded (the API answers 503)."""


class WorkerStoppedError(RuntimeError):
    """The worker is not running (shutting down, or it died)."""


@dataclass(eq=False)
class _Job:
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
class _Part:
    """Rows start:stop of a job, run by one lane (the whole job on the one-thread worker)."""

    job: _Job
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start

    def classes(self) -> list[int] | None:
        ids = self.job.class_ids
        return None if ids is None else ids[self.start : self.stop]


class GenerationWorker:
    """Runs a bundle's generators in background threads (see the module docstring for lanes and batching).

    Args:
        bundle: the verified bundle.
        num_threads: interpreter threads per model (and lanes, by default).
        delegate: interpreter delegate ("cpu", "gpu", "edgetpu"; see edge.litert).
        queue_limit: requests waiting before `submit` raises WorkerBusyError.
        metrics: where latencies and counts are recorded.
        max_rows: most designs the one-thread worker drains into one batch (a request is never split there).
        lanes: single-threaded canonical interpreters, each run by its own thread (default: num_threads; 0 or 1
            turns them off, as does a delegate other than "cpu").
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        num_threads: int = 2,
        delegate: str = "cpu",
        queue_limit: int = 64,
        metrics: KioskMetrics | None = None,
        max_rows: int = 64,
        lanes: int | None = None,
    ) -> None:
        from edge.designs import DesignGenerator

        self.bundle = bundle
        self.metrics = metrics or KioskMetrics()
        canonical = min(bundle.batches)
        lanes = num_threads if lanes is None else lanes
        self._lanes = [DesignGenerator(bundle, batch=canonical, num_threads=1, delegate=delegate)
                       for _ in range(lanes)] if lanes > 1 and delegate == "cpu" else []
        # With lanes only the canonical model is needed (for a lone design, on every thread); without, all.
        sizes = [canonical] if self._lanes else list(bundle.batches)
        self._generators = {b: DesignGenerator(bundle, batch=b, num_threads=num_threads, delegate=delegate)
                            for b in sizes}
        self._parts: collections.deque[_Part] = collections.deque()
        self._cv = threading.Condition()
        self._queued_jobs = 0  # jobs with a part not yet taken (what queue_limit bounds)
        self._queue_limit = queue_limit
        self._max_rows = max_rows
        self._running: dict[int, float] = {}  # thread index -> monotonic start of the part it runs
        self._exclusive = False  # a lone design runs on the multi-threaded interpreter: lanes wait
        self._was_quiet = False  # the previous part found every lane idle and nothing queued
        self._latency_s: dict[int, float] = {}
        self._threads: list[threading.Thread] = []
        self._last_error: str | None = None
        self._stopping = False
        self.batches_run = 0

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
        return len(self._lanes)

    def sample_latents(self, n: int, seed: int) -> np.ndarray:
        """The model's prior: float32 (n, z_dim) from `np.random.default_rng(seed)` (DesignGenerator's)."""
        return self._generators[self.canonical_batch].sample_latents(n, seed)

    def start(self) -> None:
        """Warm every interpreter up (measuring the latencies batch planning uses) and start the threads."""
        for batch, gen in self._generators.items():
            self._latency_s[batch] = _warm(gen, batch)
        for lane in self._lanes:
            _warm(lane, self.canonical_batch)
        log.info("event=worker_warm lanes=%d latency_ms=%s", len(self._lanes),
                 {b: round(t * 1000, 2) for b, t in sorted(self._latency_s.items())})
        for k in range(max(1, len(self._lanes))):
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
                _answer(part.job)

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
            "lanes": len(self._lanes),
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
    ) -> _Job:
        """Queue a job (one part per lane); the job, whose future (or waiter) gets the outcome."""
        job = _Job(np.asarray(z, dtype=np.float32), None if class_ids is None else list(class_ids), exact, post,
                   waiter=waiter)
        n = len(job.z)
        if n == 0:
            raise ValueError("no latents to generate from")
        # Lanes share a request between them (one part each); the one-thread worker takes it whole.
        k = min(n, len(self._lanes)) if self._lanes else 1
        bounds = [round(i * n / k) for i in range(k + 1)]
        job.parts_left = k
        with self._cv:
            if self._stopping or not self._alive():
                raise WorkerStoppedError("the generation worker is not running")
            if self._queued_jobs >= self._queue_limit:
                raise WorkerBusyError("the kiosk is busy; try again in a moment")
            self._queued_jobs += 1
            self._parts.extend(_Part(job, a, b) for a, b in itertools.pairwise(bounds))
            self._cv.notify(k)
        return job

    def plan(self, rows: int) -> list[int]:
        """Split `rows` designs into model calls: a list of batch sizes, largest first (a call may be padded).

        Uses the warm-up latencies, so the remainder after the large calls is padded into one more large call
        or run as small calls, whichever is quicker.
        """
        sizes = sorted(self._latency_s, reverse=True)
        return _plan(rows, sizes, self._latency_s)

    # The threads -----------------------------------------------------------------------------------------------

    def _serve(self, k: int) -> None:
        while True:
            with self._cv:
                while self._exclusive or not self._parts:
                    if self._stopping and not self._parts:
                        return
                    self._cv.wait()
                parts = self._take()
                if not parts:  # all cancelled while queued
                    continue
                solo = False
                if self._lanes:
                    quiet = not self._parts and not self._running
                    solo = quiet and self._was_quiet and len(parts[0].job.z) == 1
                    self._was_quiet = quiet
                    self._exclusive = solo
                self._running[k] = time.monotonic()
            finished: list[_Job] = []
            try:
                finished = self._run(parts, k, solo)
            finally:
                with self._cv:
                    del self._running[k]
                    self.batches_run += 1
                    if solo:
                        self._exclusive = False
                        self._cv.notify_all()
            for job in finished:  # after this thread counts as idle: an answer can bring the next request
                _answer(job)

    def _take(self) -> list[_Part]:
        """Under the lock: the next part (lanes) or every queued request up to max_rows (one thread), started;
        parts of requests cancelled while queued are dropped."""
        taken: list[_Part] = []
        rows = 0
        while self._parts and (not taken or (not self._lanes and rows < self._max_rows)):
            part = self._parts.popleft()
            self._start(part.job)
            if part.job.dropped:
                continue
            taken.append(part)
            rows += part.rows
        return taken

    def _start(self, job: _Job) -> None:
        """Under the lock, at a job's first part taken (or failed by stop): it leaves the queue count and its
        future runs, or it is dropped if it was cancelled while queued."""
        if not (job.started or job.dropped):
            self._queued_jobs -= 1
            job.started = job.future.set_running_or_notify_cancel()
            job.dropped = not job.started

    def _run(self, parts: list[_Part], k: int, solo: bool) -> list[_Job]:
        """Generate the parts' designs; the jobs this finished (to be answered)."""
        t0 = time.perf_counter()
        rows = 0
        finished: list[_Job] = []
        for exact in (True, False):
            group = [p for p in parts if p.job.exact == exact]
            if not group:
                continue
            z = np.concatenate([p.job.z[p.start : p.stop] for p in group])
            classes = None if group[0].job.class_ids is None else [c for p in group for c in p.classes() or []]
            try:
                if self._lanes:
                    gen = self._generators[self.canonical_batch] if solo else self._lanes[k]
                    images = gen.generate(z, classes)
                else:
                    images = self._generate_batch(z, classes, exact)
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

    def _part_done(self, part: _Part, error: BaseException | None, images: np.ndarray | None = None) -> bool:
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

    def _generate_batch(self, z: np.ndarray, classes: list[int] | None, exact: bool) -> np.ndarray:
        """The one-thread worker's batch: the canonical model for exact designs, else the quickest plan."""
        if exact:
            return self._generators[self.canonical_batch].generate(z, classes)
        out, start = [], 0
        for batch in self.plan(len(z)):
            stop = min(start + batch, len(z))
            part_classes = None if classes is None else classes[start:stop]
            out.append(self._generators[batch].generate(z[start:stop], part_classes))
            start = stop
        return np.concatenate(out)


def _warm(gen: Any, batch: int) -> float:
    """Three calls of a generator on a full batch; the median seconds."""
    z = gen.sample_latents(batch, 0)
    classes = [0] * batch if gen.bundle.conditional else None
    timings = []
    for _ in range(3):
        t0 = time.perf_counter()
        gen.generate(z, classes)
        timings.append(time.perf_counter() - t0)
    return float(np.median(timings))


def _answer(job: _Job) -> None:
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


def _wake(job: _Job) -> None:
    """On the caller's event loop: pass the job's outcome to its waiter (unless the caller gave up)."""
    waiter = job.waiter
    if waiter is None or waiter.done():
        return
    exc = job.future.exception()
    if exc is not None:
        waiter.set_exception(exc)
    else:
        waiter.set_result(job.future.result())


def _plan(rows: int, sizes_desc: list[int], latency_s: dict[int, float]) -> list[int]:
    """Cheapest split of `rows` into calls of the given batch sizes (padding allowed); dynamic programming."""
    best: dict[int, tuple[float, list[int]]] = {0: (0.0, [])}
    for r in range(1, rows + 1):
        options = []
        for b in sizes_desc:
            prev_cost, prev_plan = best[max(r - b, 0)]
            options.append((prev_cost + latency_s[b], [b, *prev_plan]))
        best[r] = min(options, key=lambda o: o[0])
    return sorted(best[rows][1], reverse=True)


class PngCache:
    """A bounded LRU of encoded design pictures by design ID (thread-safe)."""

    def __init__(self, max_items: int) -> None:
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._max = max_items
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        """The cached bytes for `key` (marking it recently used), or None."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: bytes) -> None:
        """Store `value`, evicting the least recently used items beyond the limit."""
        if self._max <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget everything (tests use it to force regeneration)."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

"""The generation worker: one thread owns the interpreters, so the event loop never waits on a model.

Requests are queued (bounded: a full queue is refused, never grown) and the worker drains whatever is waiting
into one batch before it runs the interpreter, so concurrent requests are served in one pass.

Two paths, because XNNPACK's int8 kernels for batch 1 and batch 8 can round a few pixels differently (measured
here: up to 3 levels on 0.3 % of the pixels of the tiny model) and a design ID must regenerate bit-exactly:
- exact (designs with an ID: grid, neighbours, mix, saved PNGs): always the bundle's *canonical* model, its
  smallest batch size, one design per row, so a design is the same picture whichever requests it was batched
  with. A batch of several designs is split across *lanes*: one single-threaded interpreter of the canonical
  model per CPU thread, run side by side (the interpreter releases the GIL). On a 2-core CPU two 1-thread
  interpreters make more designs per second than one 2-thread interpreter, whose threads mostly wait on each
  other for a model this small; a lone design still gets the multi-threaded interpreter, the lowest latency.
  XNNPACK splits work between threads by output tiles, so the thread count never changes a pixel (a test
  checks it);
- fast (attract-mode walk frames, which are shown once and never saved): split between the bundle's batch
  sizes by the latencies measured at warm-up (e.g. 11 frames = one batch-8 call + three batch-1 calls, or two
  batch-8 calls, whichever is quicker).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import queue
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


@dataclass
class _Job:
    z: np.ndarray
    class_ids: list[int] | None
    exact: bool
    post: Callable[[np.ndarray], Any] | None = None
    future: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)


class GenerationWorker:
    """Runs a bundle's generators in a background thread, batching the requests that arrive together.

    Args:
        bundle: the verified bundle.
        num_threads: interpreter threads per model.
        delegate: interpreter delegate ("cpu", "gpu", "edgetpu"; see edge.litert).
        queue_limit: pending requests before `submit` raises WorkerBusyError.
        metrics: where latencies and counts are recorded.
        max_rows: most designs generated in one worker batch (whole requests are never split across batches).
        lanes: single-threaded canonical interpreters that share a batch of exact designs (default: num_threads;
            0 or 1 turns them off).
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
        self._generators = {
            b: DesignGenerator(bundle, batch=b, num_threads=num_threads, delegate=delegate)
            for b in bundle.batches
        }
        lanes = num_threads if lanes is None else lanes
        canonical = min(bundle.batches)
        self._lanes = [DesignGenerator(bundle, batch=canonical, num_threads=1, delegate=delegate)
                       for _ in range(lanes)] if lanes > 1 and delegate == "cpu" else []
        self._lane_pool = (concurrent.futures.ThreadPoolExecutor(len(self._lanes) - 1, "generation-lane")
                           if self._lanes else None)
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=queue_limit)
        self._max_rows = max_rows
        self._latency_s: dict[int, float] = {}
        self._thread: threading.Thread | None = None
        self._busy_since: float | None = None
        self._last_error: str | None = None
        self._stopping = False
        self.batches_run = 0

    @property
    def backend(self) -> str:
        """The interpreter runtime in use (ai_edge_litert, tflite_runtime or tensorflow)."""
        gen = self._generators[min(self._generators)]
        return str(getattr(gen, "backend", "unknown"))

    def sample_latents(self, n: int, seed: int) -> np.ndarray:
        """The model's prior: float32 (n, z_dim) from `np.random.default_rng(seed)` (DesignGenerator's)."""
        return self._generators[min(self._generators)].sample_latents(n, seed)

    def start(self) -> None:
        """Warm every model up (measuring its latency for batch planning) and start the worker thread."""
        for batch, gen in self._generators.items():
            z = gen.sample_latents(batch, 0)
            classes = [0] * batch if self.bundle.conditional else None
            timings = []
            for _ in range(3):
                t0 = time.perf_counter()
                gen.generate(z, classes)
                timings.append(time.perf_counter() - t0)
            self._latency_s[batch] = float(np.median(timings))
        log.info("event=worker_warm latency_ms=%s",
                 {b: round(t * 1000, 2) for b, t in sorted(self._latency_s.items())})
        self._thread = threading.Thread(target=self._run, name="generation-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish the requests queued so far, then stop (new ones are refused); any still queued after
        `timeout_s` fail with WorkerStoppedError, except those cancelled meanwhile."""
        self._stopping = True
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(timeout_s)
        elif self._lane_pool is not None:  # never started; otherwise the worker thread shuts its lanes down
            self._lane_pool.shutdown(wait=False)
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                _fail_stopped(job)
        try:  # the marker was drained too: a worker thread still busy ends after its batch
            self._queue.put_nowait(None)
        except queue.Full:
            pass

    def healthy(self) -> bool:
        """True while the thread runs and no batch has been running for more than STUCK_AFTER_S."""
        alive = self._thread is not None and self._thread.is_alive()
        busy = self._busy_since
        return alive and (busy is None or time.monotonic() - busy < STUCK_AFTER_S)

    def status(self) -> dict[str, object]:
        """Queue depth, liveness and the batch latencies measured at warm-up (for /healthz)."""
        busy = self._busy_since
        return {
            "alive": self._thread is not None and self._thread.is_alive(),
            "healthy": self.healthy(),
            "queued": self._queue.qsize(),
            "busy_s": None if busy is None else round(time.monotonic() - busy, 3),
            "batches_run": self.batches_run,
            "warm_latency_ms": {str(b): round(t * 1000, 3) for b, t in sorted(self._latency_s.items())},
            "last_error": self._last_error,
        }

    @property
    def canonical_batch(self) -> int:
        """The batch size of the model every exact design is made with (the bundle's smallest)."""
        return min(self._generators)

    def submit(
        self, z: np.ndarray, class_ids: Sequence[int] | None = None, *, exact: bool = True,
        post: Callable[[np.ndarray], Any] | None = None,
    ) -> concurrent.futures.Future:
        """Queue designs for generation.

        Args:
            z: float32 (n, z_dim) latents.
            class_ids: one class id per row for a conditional model, None otherwise.
            exact: make them with the canonical model (pictures that must match their design ID bit for bit);
                False lets the worker use whichever batch size is quickest (attract-mode frames).
            post: run on the pictures in the worker thread before the future is resolved (e.g. PNG encoding:
                it saves the caller a second thread hop); its result is the future's, its exception the future's.

        Returns:
            A future of uint8 (n, H, W, 3) RGB pictures, or of what `post` made of them.

        Raises:
            WorkerBusyError: the queue is full.
            WorkerStoppedError: the worker is not running.
        """
        if self._stopping or self._thread is None or not self._thread.is_alive():
            raise WorkerStoppedError("the generation worker is not running")
        job = _Job(np.asarray(z, dtype=np.float32), None if class_ids is None else list(class_ids), exact, post)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise WorkerBusyError("the kiosk is busy; try again in a moment") from None
        return job.future

    async def generate(
        self, z: np.ndarray, class_ids: Sequence[int] | None = None, *, exact: bool = True,
        post: Callable[[np.ndarray], Any] | None = None,
    ) -> Any:
        """`submit` for async code: awaits the pictures (or `post`'s result) without blocking the event loop."""
        t0 = time.perf_counter()
        images = await asyncio.wrap_future(self.submit(z, class_ids, exact=exact, post=post))
        self.metrics.request_seconds.observe(time.perf_counter() - t0)
        return images

    def plan(self, rows: int) -> list[int]:
        """Split `rows` designs into model calls: a list of batch sizes, largest first (a call may be padded).

        Uses the warm-up latencies, so the remainder after the large calls is padded into one more large call
        or run as small calls, whichever is quicker.
        """
        sizes = sorted(self._latency_s, reverse=True)
        return _plan(rows, sizes, self._latency_s)

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            if self._lane_pool is not None:
                self._lane_pool.shutdown(wait=False)

    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:  # the stop marker comes after whatever was queued before stop()
                return
            jobs, rows = [job], len(job.z)
            while rows < self._max_rows:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put_nowait(None)  # keep the stop marker for the outer loop
                    break
                jobs.append(nxt)
                rows += len(nxt.z)
            self._run_batch(jobs)

    def _run_batch(self, jobs: list[_Job]) -> None:
        # A request whose future was cancelled while queued (its asyncio task was cancelled: wrap_future passes
        # that on) is dropped here; the rest are marked running, so they can no longer be cancelled and
        # set_result/set_exception below cannot raise InvalidStateError and kill this thread.
        jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        if not jobs:
            return
        self._busy_since = time.monotonic()
        t0 = time.perf_counter()
        rows = 0
        try:
            for exact in (True, False):
                group = [j for j in jobs if j.exact == exact]
                if not group:
                    continue
                z = np.concatenate([j.z for j in group])
                classes = (None if group[0].class_ids is None
                           else [c for j in group for c in j.class_ids or []])
                try:
                    images = self.generate_here(z, classes, exact)
                except Exception as exc:  # fail these requests, keep the worker alive for the next ones
                    self._last_error = f"{type(exc).__name__}: {exc}"
                    log.exception("event=generation_failed rows=%d", len(z))
                    for j in group:
                        j.future.set_exception(exc)
                    continue
                rows += len(z)
                bounds = np.cumsum([0, *(len(j.z) for j in group)])
                self._finish(group, [images[a:b] for a, b in itertools.pairwise(bounds)])
        finally:
            self._busy_since = None
        elapsed = time.perf_counter() - t0
        self.batches_run += 1
        self.metrics.generation_seconds.observe(elapsed)
        self.metrics.batch_designs.observe(rows)
        self.metrics.designs_generated.inc(rows)
        log.debug("event=batch requests=%d rows=%d ms=%.2f", len(jobs), rows, elapsed * 1000)

    def _finish(self, jobs: list[_Job], parts: list[np.ndarray]) -> None:
        """Resolve each job with its pictures or its `post` of them; the posts (PNG encoding) of the second half
        of the jobs run on the lanes' pool, beside this thread, as the generation did."""
        def resolve(job: _Job, part: np.ndarray) -> None:
            try:
                job.future.set_result(part if job.post is None else job.post(part))
            except Exception as exc:  # only this request fails
                log.exception("event=post_processing_failed rows=%d", len(part))
                job.future.set_exception(exc)

        def resolve_all(pairs: list[tuple[_Job, np.ndarray]]) -> None:
            for job, part in pairs:
                resolve(job, part)

        pairs = list(zip(jobs, parts, strict=True))
        split = len(jobs) // 2 if self._lanes and sum(j.post is not None for j in jobs) > 1 else len(jobs)
        halves = [pairs[:split], pairs[split:]] if split < len(pairs) else [pairs]
        self._side_by_side([lambda h=h: resolve_all(h) for h in halves])

    def generate_here(self, z: np.ndarray, classes: list[int] | None = None, exact: bool = True) -> np.ndarray:
        """Make designs in the calling thread, as a worker batch would (no queue): what benchmarks compare with.

        Safe beside a running worker (every interpreter has its own lock), but then the two take turns.
        """
        if exact:
            if len(z) < 2 or not self._lanes:
                return self._generators[self.canonical_batch].generate(z, classes)
            return self._generate_in_lanes(z, classes)
        out, start = [], 0
        for batch in self.plan(len(z)):
            stop = min(start + batch, len(z))
            part_classes = None if classes is None else classes[start:stop]
            out.append(self._generators[batch].generate(z[start:stop], part_classes))
            start = stop
        return np.concatenate(out)

    def _generate_in_lanes(self, z: np.ndarray, classes: list[int] | None) -> np.ndarray:
        parts = np.array_split(np.arange(len(z)), min(len(self._lanes), len(z)))

        def run(lane, rows: np.ndarray) -> Callable[[], np.ndarray]:
            return lambda: lane.generate(z[rows], None if classes is None else [classes[i] for i in rows])

        tasks = [run(lane, rows) for lane, rows in zip(self._lanes[: len(parts)], parts, strict=True)]
        return np.concatenate(self._side_by_side(tasks))

    def _side_by_side(self, tasks: list[Callable[[], Any]]) -> list[Any]:
        """Run the first task in this thread (it is a lane too) and the others on the lanes' pool; their results."""
        if self._lane_pool is None:
            return [task() for task in tasks]
        others = [self._lane_pool.submit(task) for task in tasks[1:]]
        first = tasks[0]()
        return [first, *(f.result() for f in others)]


def _fail_stopped(job: _Job) -> None:
    # A future cancelled meanwhile (its client went away) is skipped: set_exception on it would raise.
    if job.future.set_running_or_notify_cancel():
        job.future.set_exception(WorkerStoppedError("kiosk is shutting down"))


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

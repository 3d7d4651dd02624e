"""The generation worker: threads that own the interpreters, so the event loop never waits on a model.

Requests are queued (bounded: a full queue is refused, never grown) and run by the worker's threads. The queue,
the threads and the answers are one machine (`base.GenerationWorker`); how a thread runs what it takes off the
queue is a policy, chosen at start by `make_worker`:

- `lanes.LaneWorker` (the CPU delegate with two or more threads, the default): one single-threaded canonical
  interpreter per CPU thread, a request split into one part per lane;
- `batching.BatchWorker` (other delegates, or a single thread): one thread drains the queue into one batch.

Every design with an ID is made by the bundle's canonical model (its smallest batch) under both policies, so it
matches its design ID bit for bit.
"""

from __future__ import annotations

from edge.bundle import Bundle
from edge.kiosk.prometheus import KioskMetrics
from edge.kiosk.worker.base import STUCK_AFTER_S, GenerationWorker, WorkerBusyError, WorkerStoppedError
from edge.kiosk.worker.batching import BatchWorker
from edge.kiosk.worker.lanes import LaneWorker


def make_worker(
    bundle: Bundle,
    *,
    num_threads: int = 2,
    delegate: str = "cpu",
    queue_limit: int = 64,
    metrics: KioskMetrics | None = None,
    max_rows: int = 64,
    lanes: int | None = None,
) -> GenerationWorker:
    """The worker for a bundle on this kiosk: lanes where they pay, one batching thread otherwise.

    Args:
        bundle: the verified bundle.
        num_threads: interpreter threads per model (and lanes, by default).
        delegate: interpreter delegate ("cpu", "gpu", "edgetpu"; see edge.litert).
        queue_limit: requests waiting before `submit` raises WorkerBusyError.
        metrics: where latencies and counts are recorded.
        max_rows: most designs the batching worker drains into one batch (a request is never split there).
        lanes: single-threaded canonical interpreters, each run by its own thread (default: num_threads; 0 or 1
            picks the batching worker, as does a delegate other than "cpu").
    """
    lanes = num_threads if lanes is None else lanes
    if lanes > 1 and delegate == "cpu":
        return LaneWorker(bundle, lanes=lanes, num_threads=num_threads, queue_limit=queue_limit, metrics=metrics)
    return BatchWorker(bundle, num_threads=num_threads, delegate=delegate, queue_limit=queue_limit, metrics=metrics,
                       max_rows=max_rows)


__all__ = ["STUCK_AFTER_S", "BatchWorker", "GenerationWorker", "LaneWorker", "WorkerBusyError", "WorkerStoppedError",
           "make_worker"]

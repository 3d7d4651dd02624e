"""Batching: one thread drains whatever is queued into one batch (other delegates, or a single CPU thread).

Two paths, because XNNPACK's int8 kernels for batch 1 and batch 8 can round a few pixels differently (measured
here: up to 3 levels on 0.3 % of the pixels of the tiny model) and a design ID must regenerate bit-exactly:

- exact (designs with an ID: grid, neighbours, mix, saved PNGs): the canonical model, one design per row;
- fast (attract-mode walk frames, which are shown once and never saved): split between the bundle's batch sizes
  by the latencies measured at warm-up (e.g. 11 frames = one batch-8 call + three batch-1 calls, or two batch-8
  calls, whichever is quicker).
"""

from __future__ import annotations

import numpy as np

from edge.bundle import Bundle
from edge.kiosk.prometheus import KioskMetrics
from edge.kiosk.worker.base import GenerationWorker
from edge.kiosk.worker.jobs import Part


class BatchWorker(GenerationWorker):
    """The batching policy (see the module docstring).

    Args:
        bundle: the verified bundle.
        num_threads: interpreter threads per model.
        delegate: interpreter delegate ("cpu", "gpu", "edgetpu"; see edge.litert).
        queue_limit: requests waiting before `submit` raises WorkerBusyError.
        metrics: where latencies and counts are recorded.
        max_rows: most designs drained into one batch (a request is never split).
    """

    def __init__(self, bundle: Bundle, *, num_threads: int = 2, delegate: str = "cpu", queue_limit: int = 64,
                 metrics: KioskMetrics | None = None, max_rows: int = 64) -> None:
        from edge.designs import DesignGenerator

        generators = {b: DesignGenerator(bundle, batch=b, num_threads=num_threads, delegate=delegate)
                      for b in bundle.batches}
        super().__init__(bundle, generators, threads=1, queue_limit=queue_limit, metrics=metrics)
        self._max_rows = max_rows

    def _take_more(self, taken: list[Part], rows: int) -> bool:
        return not taken or rows < self._max_rows

    def plan(self, rows: int) -> list[int]:
        """Split `rows` designs into model calls: a list of batch sizes, largest first (a call may be padded).

        Uses the warm-up latencies, so the remainder after the large calls is padded into one more large call
        or run as small calls, whichever is quicker.
        """
        sizes = sorted(self._latency_s, reverse=True)
        return _plan(rows, sizes, self._latency_s)

    def _make(self, z: np.ndarray, classes: list[int] | None, exact: bool, k: int, solo: bool) -> np.ndarray:
        if exact:
            return self._generators[self.canonical_batch].generate(z, classes)
        out, start = [], 0
        for batch in self.plan(len(z)):
            stop = min(start + batch, len(z))
            part_classes = None if classes is None else classes[start:stop]
            out.append(self._generators[batch].generate(z[start:stop], part_classes))
            start = stop
        return np.concatenate(out)


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

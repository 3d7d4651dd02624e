"""Lanes: one thread per CPU thread, each with its own single-threaded canonical interpreter.

A request is split into one part per lane, and every lane takes the next part off the queue as soon as it is
done with its own: nothing waits for a whole batch to end, so under load every core keeps generating. On a
2-core CPU two 1-thread interpreters make more designs per second than one 2-thread interpreter, whose threads
wait on each other for a model this small.

A lone design on a quiet kiosk (its request and the one before found every lane idle and nothing queued) runs on
a multi-threaded interpreter instead, the lowest latency, while the other lanes wait. XNNPACK splits work between
threads by output tiles, so neither the lane nor the thread count changes a pixel (a test checks it): every
design is made by the canonical model and matches its design ID bit for bit, walk frames included.
"""

from __future__ import annotations

import numpy as np

from edge.bundle import Bundle
from edge.kiosk.prometheus import KioskMetrics
from edge.kiosk.worker.base import GenerationWorker, warm
from edge.kiosk.worker.jobs import Part


class LaneWorker(GenerationWorker):
    """The lanes policy (see the module docstring).

    Args:
        bundle: the verified bundle.
        lanes: lanes (threads, each with a 1-thread interpreter); at least 2.
        num_threads: threads of the interpreter a lone design runs on.
        queue_limit: requests waiting before `submit` raises WorkerBusyError.
        metrics: where latencies and counts are recorded.
    """

    def __init__(self, bundle: Bundle, *, lanes: int, num_threads: int = 2, queue_limit: int = 64,
                 metrics: KioskMetrics | None = None) -> None:
        from edge.designs import DesignGenerator

        canonical = min(bundle.batches)
        # Only the canonical model is needed: for a lone design on every thread, and one per lane.
        solo = DesignGenerator(bundle, batch=canonical, num_threads=num_threads, delegate="cpu")
        super().__init__(bundle, {canonical: solo}, threads=lanes, queue_limit=queue_limit, metrics=metrics)
        self._lanes = [DesignGenerator(bundle, batch=canonical, num_threads=1, delegate="cpu")
                       for _ in range(lanes)]
        self._exclusive = False  # a lone design runs on the multi-threaded interpreter: lanes wait
        self._was_quiet = False  # the previous part found every lane idle and nothing queued

    @property
    def lanes(self) -> int:
        """Lanes in use."""
        return len(self._lanes)

    def _warm_extra(self) -> None:
        for lane in self._lanes:
            warm(lane, self.canonical_batch)

    def _parts_per_job(self, n: int) -> int:
        return min(n, len(self._lanes))  # lanes share a request between them, one part each

    def _may_take(self) -> bool:
        return not self._exclusive and bool(self._parts)

    def _begin(self, parts: list[Part]) -> bool:
        quiet = not self._parts and not self._running
        solo = quiet and self._was_quiet and len(parts[0].job.z) == 1
        self._was_quiet = quiet
        self._exclusive = solo
        return solo

    def _end(self, solo: bool) -> None:
        if solo:
            self._exclusive = False
            self._cv.notify_all()

    def _make(self, z: np.ndarray, classes: list[int] | None, exact: bool, k: int, solo: bool) -> np.ndarray:
        gen = self._generators[self.canonical_batch] if solo else self._lanes[k]
        return gen.generate(z, classes)

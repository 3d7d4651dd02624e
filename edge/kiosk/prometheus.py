"""Prometheus text exposition (format 0.0.4) for the kiosk, without a client library.

Only what the kiosk needs: counters, gauges and histograms with fixed label sets, thread-safe, rendered by
`Registry.render()` for `/metrics`.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

_M = TypeVar("_M", "Counter", "Gauge", "CounterFunc", "Histogram")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    escaped = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for v in values)
    return "{" + ",".join(f'{n}="{v}"' for n, v in zip(names, escaped, strict=True)) + "}"


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    """A monotonically increasing count, optionally split by labels."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[tuple[str, ...], float] = {} if labelnames else {(): 0.0}

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        """Add `amount` (>= 0) to the series named by `labels`."""
        if amount < 0:
            raise ValueError("counters only go up")
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        """The current value of one series (0 when never incremented)."""
        with self._lock:
            return self._values.get(labels, 0.0)

    def lines(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.labelnames, k)} {_num(v)}" for k, v in items]


class Gauge(_Metric):
    """A value read from a callback when scraped."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        super().__init__(name, help_text)
        self._read = read


class CounterFunc(Gauge):
    """A counter kept elsewhere (e.g. by the camera feed) and read from a callback when scraped."""

    kind = "counter"

    def lines(self) -> list[str]:
        return [f"{self.name} {_num(float(self._read()))}"]


class Histogram(_Metric):
    """Observations counted into cumulative buckets (upper bounds, seconds for latencies)."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        super().__init__(name, help_text)
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * (len(self.buckets) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        """Record one observation."""
        i = bisect.bisect_left(self.buckets, value)
        with self._lock:
            self._counts[i] += 1
            self._sum += value

    @property
    def count(self) -> int:
        """Number of observations so far."""
        with self._lock:
            return sum(self._counts)

    def lines(self) -> list[str]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        out, running = [], 0
        for bound, c in zip((*self.buckets, math.inf), counts, strict=True):
            running += c
            out.append(f'{self.name}_bucket{{le="{_num(bound)}"}} {running}')
        out.append(f"{self.name}_sum {_num(total)}")
        out.append(f"{self.name}_count {running}")
        return out


class Registry:
    """The metrics of one kiosk process, in registration order."""

    def __init__(self) -> None:
        self._metrics: list[Counter | Gauge | Histogram] = []

    def add(self, metric: _M) -> _M:
        """Register a metric and return it."""
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        """The whole exposition text, newline-terminated."""
        lines: list[str] = []
        for metric in self._metrics:
            lines += metric.header() + metric.lines()
        return "\n".join(lines) + "\n"


LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class KioskMetrics:
    """The kiosk's metrics, created together so every module records into the same registry."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.generation_seconds = self.registry.add(Histogram(
            "atelier_generation_seconds", "Wall time of one generation pass (a lane's part of a request, or a batch).",
            LATENCY_BUCKETS_S))
        self.request_seconds = self.registry.add(Histogram(
            "atelier_request_seconds", "Wall time of a design request, queueing included.",
            LATENCY_BUCKETS_S))
        self.batch_designs = self.registry.add(Histogram(
            "atelier_batch_designs", "Designs generated per generation pass.",
            (1, 2, 4, 8, 16, 32, 64)))
        self.designs_served = self.registry.add(Counter(
            "atelier_designs_served_total", "Design pictures sent to clients.", ("route",)))
        self.designs_generated = self.registry.add(Counter(
            "atelier_designs_generated_total", "Designs run through the interpreter (cache misses)."))
        self.cache_hits = self.registry.add(Counter(
            "atelier_design_cache_hits_total", "Design pictures served from the PNG cache."))
        self.http_errors = self.registry.add(Counter(
            "atelier_http_client_errors_total", "Requests refused with a 4xx status.", ("status",)))
        # The camera feed keeps its own counters; the service points `camera_status` at it.
        self.camera_status: Callable[[], dict[str, int]] = dict
        self.registry.add(CounterFunc(
            "atelier_camera_reconnects_total", "Camera source reopened after a failure or a stall.",
            lambda: self.camera_status().get("reconnects", 0)))
        self.registry.add(CounterFunc(
            "atelier_camera_failures_total", "Camera read errors, failed opens and stalls.",
            lambda: self.camera_status().get("failures", 0)))
        self.registry.add(CounterFunc(
            "atelier_camera_frames_total", "Camera frames read and preprocessed.",
            lambda: self.camera_status().get("frames", 0)))

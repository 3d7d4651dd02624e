"""The generation worker's lanes: requests split into parts, a lone design on every thread, a clean stop."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np
import pytest
from fixtures_asyncio import RunAsync

from edge.bundle import load_bundle
from edge.designs import DesignGenerator
from edge.kiosk.worker import WorkerStoppedError, make_worker


def _solo_flags(caplog: pytest.LogCaptureFixture) -> list[bool]:
    """Whether each worker pass logged so far ran on the multi-threaded interpreter."""
    return [r.getMessage().split("solo=")[1].split()[0] == "True" for r in caplog.records
            if r.getMessage().startswith("event=batch")]


def test_a_request_is_shared_between_the_lanes_and_matches_one_interpreter(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    reference = DesignGenerator(bundle, batch=1, num_threads=1)
    z = reference.sample_latents(7, 5)
    worker = make_worker(bundle, num_threads=2)
    worker.start()
    try:
        assert worker.lanes == 2 and worker.status()["lanes"] == 2
        before = worker.batches_run
        assert np.array_equal(worker.submit(z).result(timeout=60), reference.generate(z))
        assert worker.batches_run - before == 2  # one part a lane
        assert worker.metrics.designs_generated.value() >= 7
    finally:
        worker.stop()


def test_without_lanes_one_thread_batches_what_is_queued(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    worker = make_worker(bundle, num_threads=2, lanes=0)
    worker.start()
    try:
        assert worker.lanes == 0 and len(worker._threads) == 1
        z = worker.sample_latents(3000, 1)
        busy = worker.submit(z)
        queued = [worker.submit(z[2 * i : 2 * i + 2]) for i in range(5)]
        assert busy.result(timeout=120).shape == (3000, 32, 32, 3)
        before = worker.batches_run
        outputs = [f.result(timeout=60) for f in queued]
        assert worker.batches_run - before <= 2  # the five queued requests ran as one batch (or two)
        expected = DesignGenerator(bundle, batch=1).generate(z[:10])
        assert np.array_equal(np.concatenate(outputs), expected)
    finally:
        worker.stop()


def test_a_lone_design_on_a_quiet_kiosk_runs_on_every_thread_but_not_under_load(
    tiny_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = load_bundle(tiny_bundle)
    worker = make_worker(bundle, num_threads=2)
    worker.start()
    caplog.set_level(logging.DEBUG, logger="edge.kiosk.worker")
    try:
        z = worker.sample_latents(3000, 2)
        expected = DesignGenerator(bundle, batch=1).generate(z[:4])
        for i in range(3):  # one at a time: each finds the worker idle
            assert np.array_equal(worker.submit(z[i : i + 1]).result(timeout=60), expected[i : i + 1])
        quiet = _solo_flags(caplog)
        assert quiet[0] is False  # the first after start: no quiet request before it
        assert quiet[1:] == [True, True]
        caplog.clear()
        busy = worker.submit(z)  # both lanes busy: what comes now waits, so it is not quiet
        singles = [worker.submit(z[i : i + 1]) for i in range(4)]
        assert np.array_equal(np.concatenate([f.result(timeout=120) for f in singles]), expected)
        busy.result(timeout=120)
        assert not any(_solo_flags(caplog))
    finally:
        worker.stop()


def test_stop_answers_every_request_even_when_it_gives_up_mid_request(tiny_bundle: Path) -> None:
    worker = make_worker(load_bundle(tiny_bundle), num_threads=2)
    worker.start()
    z = worker.sample_latents(600, 3)
    futures = [worker.submit(z[: 200 + 7 * k]) for k in range(20)]  # two parts each, far more than can run
    worker.stop(timeout_s=0.01)
    done = stopped = 0
    for k, future in enumerate(futures):
        try:
            assert future.result(timeout=120).shape == (200 + 7 * k, 32, 32, 3)
            done += 1
        except WorkerStoppedError:
            stopped += 1
    assert stopped >= 1 and done + stopped == len(futures)
    for thread in worker._threads:
        thread.join(60)
        assert not thread.is_alive()
    with pytest.raises(WorkerStoppedError):
        worker.submit(z[:1])


def test_a_cancelled_async_caller_takes_its_request_off_the_queue(tiny_bundle: Path, run_async: RunAsync) -> None:
    worker = make_worker(load_bundle(tiny_bundle), num_threads=2)
    worker.start()
    z = worker.sample_latents(3000, 4)

    async def scenario() -> tuple[int, np.ndarray]:
        busy = asyncio.ensure_future(worker.generate(z))
        while worker.status()["busy_s"] is None:
            await asyncio.sleep(0.001)
        abandoned = asyncio.ensure_future(worker.generate(z[:2]))
        await asyncio.sleep(0)  # it is queued
        abandoned.cancel()
        with pytest.raises(asyncio.CancelledError):
            await abandoned
        after = worker.metrics.designs_generated.value()
        await busy
        return int(after), await worker.generate(z[:1])

    try:
        generated_before_busy_ended, one = run_async(scenario)
        assert one.shape == (1, 32, 32, 3)
        # 3000 (busy) + 1 (the last call): the two abandoned designs were never generated.
        assert worker.metrics.designs_generated.value() == 3001
        assert generated_before_busy_ended <= 3000
    finally:
        worker.stop()


def test_an_empty_request_is_refused(tiny_bundle: Path) -> None:
    worker = make_worker(load_bundle(tiny_bundle), num_threads=2)
    worker.start()
    try:
        with pytest.raises(ValueError, match="no latents"):
            worker.submit(np.zeros((0, worker.bundle.z_dim), np.float32))
    finally:
        worker.stop()

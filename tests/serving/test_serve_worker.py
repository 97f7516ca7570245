"""The model worker's queue and the score mapping, without a model."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest

from core_rerank.scoring import relevance_scores
from core_rerank.serving.worker import ModelWorker, QueueFull, RequestTimeout


def test_relevance_scores_min_max():
    assert relevance_scores([2.0, 1.0, 3.0]) == [0.5, 0.0, 1.0]
    assert relevance_scores([0.7]) == [1.0]
    assert relevance_scores([0.2, 0.2]) == [1.0, 1.0]
    assert relevance_scores([1.0, -math.inf, 0.0]) == [1.0, 0.0, 0.0]
    assert relevance_scores([-math.inf]) == [0.0]


def test_jobs_never_overlap_and_the_loop_stays_free():
    worker = ModelWorker(max_queue=8, timeout_s=10)
    running, overlaps = [0], []
    lock = threading.Lock()

    def job():
        with lock:
            running[0] += 1
            overlaps.append(running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return threading.current_thread().name

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tick = asyncio.create_task(ticker())
        names = await asyncio.gather(*[worker.run(job) for _ in range(6)])
        tick.cancel()
        return names, ticks

    names, ticks = asyncio.run(main())
    assert max(overlaps) == 1 and len(set(names)) == 1
    assert ticks >= 10  # 0.3 s of jobs; the event loop kept ticking
    worker.close()


def test_full_queue_refuses_at_once_with_retry_after():
    worker = ModelWorker(max_queue=1, timeout_s=10)
    started, release = threading.Event(), threading.Event()

    def blocker():
        started.set()
        return release.wait(10)

    async def main():
        first = asyncio.ensure_future(worker.run(blocker))
        while not started.is_set():
            await asyncio.sleep(0.01)
        second = asyncio.ensure_future(worker.run(lambda: "second"))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull) as info:
            await worker.run(lambda: "third")
        assert info.value.retry_after >= 1 and worker.queue_depth == 1
        release.set()
        return await first, await second

    assert asyncio.run(main()) == (True, "second")
    assert worker.in_flight == 0
    worker.close()


def test_timeout_answers_and_a_queued_job_never_runs():
    worker = ModelWorker(max_queue=4, timeout_s=0.5)
    started, release, ran = threading.Event(), threading.Event(), []

    def blocker():
        started.set()
        return release.wait(10)

    async def main():
        first = asyncio.ensure_future(worker.run(blocker))
        while not started.is_set():
            await asyncio.sleep(0.01)
        with pytest.raises(RequestTimeout):
            await worker.run(lambda: ran.append(1))
        release.set()
        with pytest.raises(RequestTimeout):
            await first

    asyncio.run(main())
    deadline = time.monotonic() + 5
    while worker.in_flight and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ran == [] and worker.in_flight == 0
    worker.close()

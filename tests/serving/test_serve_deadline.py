"""A request that would not finish within --timeout at the server's recent pace is refused at
once (503, Retry-After, the JSON error shape) instead of running into a 504 or a client that
gave up (Milvus waits 60 s). No model: jobs that sleep, and a reranker that sleeps per document."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from core_rerank.serving import create_app
from core_rerank.serving.worker import ModelWorker, OverDeadline, RequestTimeout


def blocking_job():
    """``(job, started, release)``: a job that runs until ``release`` is set."""
    started, release = threading.Event(), threading.Event()

    def job():
        started.set()
        release.wait(10)

    return job, started, release


def test_a_job_over_the_limit_at_the_measured_pace_is_refused_before_it_runs():
    worker = ModelWorker(max_queue=4, timeout_s=1.0)
    ran = []

    async def main():
        assert await worker.run(lambda: time.sleep(0.05) or "first", cost=5) == "first"  # first: no pace yet
        with pytest.raises(OverDeadline, match=r"this request \(200 documents\) would take about \d+ s") as info:
            await worker.run(lambda: ran.append("big"), cost=200)
        assert info.value.retry_after >= 1
        assert await worker.run(lambda: "fits", cost=20) == "fits"
        assert await worker.run(lambda: "no cost given: never refused") == "no cost given: never refused"

    asyncio.run(main())
    assert ran == [] and worker.in_flight == 0
    worker.close()


def test_work_queued_ahead_counts_and_retry_after_is_its_drain_time():
    worker = ModelWorker(max_queue=4, timeout_s=1.0)
    blocker, started, release = blocking_job()

    async def main():
        await worker.run(lambda: time.sleep(0.05), cost=5)  # 0.01 s a document
        # margins wide enough for a busy machine, where the measured pace can come out slower
        first = asyncio.ensure_future(worker.run(blocker, cost=60))  # about 0.6 s ahead
        await asyncio.to_thread(started.wait, 10)
        with pytest.raises(OverDeadline, match="the server is busy") as info:
            await worker.run(lambda: None, cost=50)  # about 0.5 s: it alone would fit
        assert info.value.retry_after >= 1
        release.set()
        await first

    asyncio.run(main())
    worker.close()


def test_the_pace_holds_while_the_worker_is_busy_and_is_measured_again_after_it_sat_idle():
    worker = ModelWorker(max_queue=4, timeout_s=0.3)
    blocker, started, release = blocking_job()

    async def main():
        await worker.run(lambda: time.sleep(0.05), cost=1)  # 0.05 s a document: 100 would be 5 s
        running = asyncio.ensure_future(worker.run(blocker, cost=1))
        await asyncio.to_thread(started.wait, 10)
        await asyncio.sleep(0.35)  # longer than the limit, but busy all along: the pace still holds
        with pytest.raises(OverDeadline):
            await worker.run(lambda: None, cost=100)
        release.set()
        with pytest.raises(RequestTimeout):
            await running
        while worker.in_flight:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.35)  # idle for longer than the limit: the next one runs and re-measures
        assert await worker.run(lambda: "admitted", cost=100) == "admitted"

    asyncio.run(main())
    worker.close()


class SlowReranker:
    """Sleeps 20 ms a document; scores by length."""

    model_id = "slow-model"
    tokenizer = None
    lock = None

    def __init__(self):
        self.calls = 0

    def rerank(self, query, documents):
        self.calls += 1
        time.sleep(0.02 * len(documents))
        order = sorted(range(len(documents)), key=lambda i: -len(documents[i]))
        return [SimpleNamespace(index=i, score=float(len(documents[i]))) for i in order]


def test_the_app_answers_503_with_retry_after_in_its_error_shape():
    reranker = SlowReranker()
    client = TestClient(create_app(reranker, timeout_s=1.0), raise_server_exceptions=False)
    body = {"model": "slow-model", "query": "q", "documents": ["a", "bb", "ccc", "dddd", "eeeee"]}
    assert client.post("/v2/rerank", json=body).status_code == 200
    started = time.monotonic()
    response = client.post("/v2/rerank", json={**body, "documents": ["x"] * 100})  # about 2 s at this pace
    assert time.monotonic() - started < 1.0 and reranker.calls == 1
    assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
    assert response.json() == {"message": response.json()["message"], "type": "deadline_exceeded", "code": 503}
    assert "100 documents" in response.json()["message"] and "--timeout" in response.json()["message"]

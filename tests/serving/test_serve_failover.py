"""``core-rerank serve --replicas 2`` on Ray Serve: what it builds, and no request lost when a
model replica dies mid-load (issue 16).

One server (two model replicas of one thread each, behind the ingress):

1. ``/v1/models`` reports the settings the replicas built: every ``None`` given on the command
   line arrives (one prompt, no word cut) and the rest are the preset's.
2. A bounded load from 4 clients without a kill, then the same load with one model replica
   process killed (SIGKILL) once a few answers are in: every request is answered 200 with the
   in-process order, and the service answers afterwards.

``CORE_RERANK_FAILOVER_REQUESTS`` (default 24) sets the requests of each phase, and
``CORE_RERANK_FAILOVER_REPORT=path.json`` writes the latency figures (docs/results.md).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from serve_helpers import ServerProcess

REQUESTS = int(os.environ.get("CORE_RERANK_FAILOVER_REQUESTS", "24"))
CLIENTS = 4
REPLICA_TITLE = "ServeReplica:core-rerank:core-rerank-model"

pytestmark = [pytest.mark.real_model, pytest.mark.slow]


def model_replica_pids() -> list[int]:
    import psutil

    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if any(REPLICA_TITLE in part for part in proc.info.get("cmdline") or ()):
            pids.append(proc.info["pid"])
    return pids


def load(url: str, cases, requests: int, on_answer=None) -> list[tuple[int, int, object, float]]:
    """``requests`` Cohere v1 requests from ``CLIENTS`` threads: (i, status, order or text, seconds)."""

    def one(i: int):
        query, docs, _ = cases[i % len(cases)]
        start = time.monotonic()
        with httpx.Client(timeout=120) as client:
            response = client.post(url + "/v1/rerank", json={"query": query, "documents": docs})
        seconds = time.monotonic() - start
        body = [r["index"] for r in response.json()["results"]] if response.status_code == 200 else response.text
        if on_answer is not None:
            on_answer()
        return i, response.status_code, body, seconds

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(one, range(requests)))


def check_answers(answers, cases) -> None:
    assert len(answers) == REQUESTS
    for i, status, got, _ in answers:
        assert status == 200, (i, got)
        assert got == [index for index, _ in cases[i % len(cases)][2]], i


def percentiles(answers) -> dict[str, float]:
    seconds = sorted(a[3] for a in answers)
    p99 = seconds[min(len(seconds) - 1, round(0.99 * (len(seconds) - 1)))]
    return {"p50_s": round(statistics.median(seconds), 3), "p99_s": round(p99, 3), "max_s": round(seconds[-1], 3)}


def test_two_replicas_build_what_they_are_told_and_lose_nothing_when_one_dies(cases):
    pytest.importorskip("ray.serve")
    pytest.importorskip("psutil")
    srv = ServerProcess(
        "--replicas", "2", "--threads-per-replica", "1", "--max-queue", "16",
        "--window-tokens", "none", "--max-doc-words", "none", ready_timeout=300,
    )  # fmt: skip
    try:
        card = httpx.get(srv.url + "/v1/models", timeout=30).json()["data"][0]["settings"]
        assert (card["window_tokens"], card["max_doc_words"], card["dtype"]) == (None, None, "float32")
        assert (card["num_layers_to_keep"], card["method"], card["heads"]["name"]) == (
            24,
            "core",
            "smollm2-135m-instruct",
        )

        calm = load(srv.url, cases, REQUESTS)
        check_answers(calm, cases)

        pids = model_replica_pids()
        assert len(pids) == 2, pids
        answered, killed = [0], threading.Event()

        def kill_after_a_few() -> None:
            answered[0] += 1
            if answered[0] == max(2, REQUESTS // 6) and not killed.is_set():
                killed.set()
                os.kill(pids[0], signal.SIGKILL)

        stormy = load(srv.url, cases, REQUESTS, on_answer=kill_after_a_few)
        assert killed.is_set()
        check_answers(stormy, cases)
        retries = [
            line
            for line in httpx.get(srv.url + "/metrics").text.splitlines()
            if line.startswith("core_rerank_replica_retries")
        ]
        assert retries and float(retries[0].split()[-1]) >= 1, retries  # the killed replica's requests went again
        after = httpx.post(srv.url + "/v1/rerank", json={"query": cases[0][0], "documents": cases[0][1]}, timeout=120)
        assert after.status_code == 200
        assert httpx.post(srv.url + "/v1/rerank", json={"query": "q", "documents": []}).status_code == 400
        report = os.environ.get("CORE_RERANK_FAILOVER_REPORT")
        if report:
            figures = {
                "requests_per_phase": REQUESTS,
                "clients": CLIENTS,
                "lost": sum(a[1] != 200 for a in stormy),
                "replica_retries": float(retries[0].split()[-1]),
                "without_kill": percentiles(calm),
                "with_kill": percentiles(stormy),
            }
            Path(report).write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        assert srv.stop(timeout=120) == 0, srv.log()

"""One model, one worker thread, a bounded queue in front of it.

Requests wait their turn for the single model thread (so forward passes never overlap on one
model, and the event loop never runs one: ``/health`` answers during a long rerank). At most
``max_queue`` requests wait behind the one running; one more is refused at once with
:class:`QueueFull` (the app answers 503 with ``Retry-After``). A request whose ``timeout_s``
passes is answered with :class:`RequestTimeout`; if it had not started, it never runs.

A job may say what it costs (``cost``: its documents). The worker keeps its recent pace
(seconds a document, decayed sums over the jobs that ran) and refuses at once, with
:class:`OverDeadline`, a job that would not finish within ``timeout_s`` at that pace, counting
the work already queued ahead of it: a clear 503 now instead of a 504 (or a client that gave
up) a minute later. The first job, and the first after the worker sat idle for ``timeout_s``,
runs and measures the pace afresh (the load may have changed).

Request batching (scoring requests that arrive together in one padded forward) is not done:
on CPU a padded batch of 4 five-document prompts ran at 0.83x the speed of the same prompts one
by one (``benchmarks/serve_batching.py``); a second replica is the way to use a second core.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from ..errors import InputError

T = TypeVar("T")


class QueueFull(Exception):
    """The queue is full; ``retry_after`` is a guess, in whole seconds, of when it drains."""

    def __init__(self, depth: int, limit: int, retry_after: int):
        super().__init__(
            f"the server is busy: {depth} requests are waiting (the queue holds at most "
            f"{limit}); retry after {retry_after} s"
        )
        self.retry_after = retry_after


class RequestTimeout(Exception):
    """The request did not finish within its time limit."""


class OverDeadline(Exception):
    """Refused before running: at the measured pace it would not finish within its time limit.
    ``retry_after``: whole seconds until the work queued ahead of it would drain."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class ModelWorker:
    """Runs model jobs one at a time on a dedicated thread, behind a bounded queue."""

    def __init__(self, lock: Any = None, max_queue: int = 64, timeout_s: float | None = 120.0):
        if max_queue < 0:
            raise InputError("max_queue must be >= 0")
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self._model_lock = lock if lock is not None else contextlib.nullcontext()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="core-rerank-model")
        self._count_lock = threading.Lock()
        self._pending = 0  # submitted and not finished (the running one included)
        self._running = False
        self._mean_s = 0.0  # moving average of job time, for Retry-After
        self._cost = 0.0  # cost (documents) of the pending jobs, the running one's included
        self._paced_s = self._paced_cost = 0.0  # decayed sums of job time and cost: the pace
        self._paced_at = -math.inf  # when the last job with a cost finished
        self.completed = 0

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the model (not counting the one running)."""
        with self._count_lock:
            return self._pending - (1 if self._running else 0)

    @property
    def in_flight(self) -> int:
        with self._count_lock:
            return self._pending

    async def run(self, job: Callable[[], T], timeout_s: float | None = None, cost: float = 0.0) -> T:
        """Run ``job`` on the model thread; raises QueueFull, OverDeadline (only for a job with a
        ``cost``), RequestTimeout or the job's error."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s if timeout_s else math.inf
        with self._count_lock:
            if self._pending >= self.max_queue + 1:
                waiting = self._pending - 1
                raise QueueFull(waiting, self.max_queue, max(1, math.ceil(self._mean_s * self._pending)))
            if cost and timeout_s:
                self._check_pace(cost, timeout_s)
            self._pending += 1
            self._cost += cost
        try:
            future = self._executor.submit(self._call, job, deadline, cost)
        except RuntimeError:  # shut down
            self._finished(None, cost)
            raise
        future.add_done_callback(lambda done: self._finished(done, cost))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout=timeout_s or None)
        except asyncio.TimeoutError:
            future.cancel()  # not started yet: it will never run
            raise RequestTimeout(
                f"the request did not finish within {timeout_s:g} s ({self.queue_depth} requests were waiting)"
            ) from None

    def _check_pace(self, cost: float, timeout_s: float) -> None:
        """Raise OverDeadline if, at the recent pace, this job and the work ahead of it would
        not finish within ``timeout_s``. Called with the count lock held."""
        if not self._paced_cost or (not self._pending and time.monotonic() - self._paced_at > timeout_s):
            return  # no pace yet, or idle for longer than the limit since it was measured
        pace = self._paced_s / self._paced_cost
        own, ahead = pace * cost, pace * self._cost
        if own + ahead <= timeout_s:
            return
        retry_after = max(1, math.ceil(ahead))
        if own > timeout_s:
            raise OverDeadline(
                f"this request ({cost:g} documents) would take about {own:.0f} s at this server's recent pace "
                f"({pace:.2g} s a document), over its limit of {timeout_s:g} s a request (--timeout): send fewer "
                "documents (Milvus sends 10 x limit) or shorter ones (--max-doc-words)",
                retry_after,
            )
        raise OverDeadline(
            f"the server is busy: the work queued ahead would take about {ahead:.0f} s and this request about "
            f"{own:.0f} s, over the limit of {timeout_s:g} s a request (--timeout); retry after {retry_after} s",
            retry_after,
        )

    def _call(self, job: Callable[[], T], deadline: float, cost: float = 0.0) -> T:
        if time.monotonic() > deadline:
            raise RequestTimeout("timed out while waiting in the queue")
        with self._count_lock:
            self._running = True
        start = time.perf_counter()
        try:
            with self._model_lock:
                return job()
        finally:
            elapsed = time.perf_counter() - start
            with self._count_lock:
                self._running = False
                self._mean_s = elapsed if not self.completed else 0.8 * self._mean_s + 0.2 * elapsed
                self.completed += 1
                if cost:
                    self._paced_s = 0.8 * self._paced_s + elapsed
                    self._paced_cost = 0.8 * self._paced_cost + cost
                    self._paced_at = time.monotonic()

    def _finished(self, _future: "Future[Any] | None", cost: float = 0.0) -> None:
        with self._count_lock:
            self._pending -= 1
            self._cost -= cost

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

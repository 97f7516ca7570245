"""Prometheus text exposition for ``GET /metrics``, without a client library.

Per server process (under Ray Serve: per replica, whichever replica answers the scrape).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """Requests, errors, documents, a latency histogram and live gauges (queue depth)."""

    def __init__(self, gauges: "dict[str, tuple[str, Callable[[], float]]] | None" = None):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.documents = 0
        self.buckets: dict[str, list[int]] = {}
        self.latency_sum: dict[str, float] = {}
        self.latency_count: dict[str, int] = {}
        self.gauges = dict(gauges or {})

    def observe(self, route: str, status: int, seconds: float, documents: int = 0) -> None:
        with self._lock:
            self.requests[(route, status)] = self.requests.get((route, status), 0) + 1
            self.documents += documents
            counts = self.buckets.setdefault(route, [0] * len(LATENCY_BUCKETS))
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            self.latency_sum[route] = self.latency_sum.get(route, 0.0) + seconds
            self.latency_count[route] = self.latency_count.get(route, 0) + 1

    def render(self) -> str:
        with self._lock:
            out = [
                "# HELP core_rerank_requests_total HTTP requests answered, by route and status code.",
                "# TYPE core_rerank_requests_total counter",
            ]
            for (route, status), n in sorted(self.requests.items()):
                out.append(f'core_rerank_requests_total{{route="{route}",status="{status}"}} {n}')
            out += [
                "# HELP core_rerank_request_errors_total Requests answered with a 4xx or 5xx status.",
                "# TYPE core_rerank_request_errors_total counter",
            ]
            for (route, status), n in sorted(self.requests.items()):
                if status >= 400:
                    out.append(f'core_rerank_request_errors_total{{route="{route}",status="{status}"}} {n}')
            out += [
                "# HELP core_rerank_documents_total Documents reranked.",
                "# TYPE core_rerank_documents_total counter",
                f"core_rerank_documents_total {self.documents}",
                "# HELP core_rerank_request_duration_seconds Time from request to response.",
                "# TYPE core_rerank_request_duration_seconds histogram",
            ]
            for route, counts in sorted(self.buckets.items()):
                for bound, n in zip(LATENCY_BUCKETS, counts):
                    out.append(f'core_rerank_request_duration_seconds_bucket{{route="{route}",le="{bound:g}"}} {n}')
                out.append(
                    f'core_rerank_request_duration_seconds_bucket{{route="{route}",le="+Inf"}} '
                    f"{self.latency_count[route]}"
                )
                out.append(f'core_rerank_request_duration_seconds_sum{{route="{route}"}} {self.latency_sum[route]:.6f}')
                out.append(f'core_rerank_request_duration_seconds_count{{route="{route}"}} {self.latency_count[route]}')
        for name, (help_text, read) in self.gauges.items():
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read():g}"]
        return "\n".join(out) + "\n"

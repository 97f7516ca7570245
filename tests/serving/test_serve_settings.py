"""``core-rerank serve`` and ``serve --replicas 2`` build the reranker they are told to, ``None``
included: ``/v1/models`` reports the settings the model (each replica) was built with. The other
paths are in tests/test_settings_paths.py; the replicas' ``None`` case is checked by the failover
test (tests/serving/test_serve_failover.py)."""

from __future__ import annotations

import httpx
import pytest
from serve_helpers import ServerProcess
from settings_cases import NONE_BUILT, NONE_SETTINGS, SET_BUILT, SET_SETTINGS, check_built, cli_options

pytestmark = pytest.mark.real_model


def served_settings(*args: str, ready_timeout: float = 180.0) -> list[dict]:
    srv = ServerProcess(*args, ready_timeout=ready_timeout)
    try:
        cards = [httpx.get(srv.url + "/v1/models", timeout=60).json()["data"] for _ in range(3)]
        response = httpx.post(
            srv.url + "/v1/rerank", json={"query": "tides", "documents": ["moon", "sun"]}, timeout=120
        )
        assert response.status_code == 200, response.text
    finally:
        assert srv.stop(timeout=120) == 0, srv.log()
    return [card[0]["settings"] for card in cards]


@pytest.mark.parametrize(("settings", "expected"), [(NONE_SETTINGS, NONE_BUILT), (SET_SETTINGS, SET_BUILT)])
def test_serve_builds_what_it_is_told(settings, expected):
    for built in served_settings(*cli_options({"dtype": "float32", **settings})):
        check_built(built, expected)


@pytest.mark.slow
def test_serve_replicas_build_what_they_are_told():
    pytest.importorskip("ray.serve")
    args = ["--replicas", "2", "--threads-per-replica", "1", *cli_options(SET_SETTINGS)]
    for built in served_settings(*args, ready_timeout=300):
        check_built(built, SET_BUILT)

"""Figures for ``core-rerank serve`` (docs/results.md): server overhead, Ray scale-out, and
throughput on short lists. SciFact (BM25 depth 20), 80-word documents, the offline default model.

    .venv/bin/python benchmarks/serve_bench.py --figure overhead --queries 5
    .venv/bin/python benchmarks/serve_bench.py --figure scaleout --requests 8
    .venv/bin/python benchmarks/serve_bench.py --figure short --requests 16   # 5-doc lists, 4 clients

Each figure starts its own server(s) as subprocesses on loopback ports, one at a time, and
prints one JSON line. Request batching itself is measured by ``benchmarks/serve_batching.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "scifact"
MODEL = "smollm2-135m-instruct"
WORDS = 80


def scifact_requests(queries: int, depth: int) -> list[tuple[str, list[str]]]:
    from core_rerank.datasets import load_eval_data
    from core_rerank.utils import join_title

    data = load_eval_data(DATA)
    out = []
    for qid, query in list(data.queries.items())[:queries]:
        docs = [
            join_title(data.corpus[d].get("title"), data.corpus[d]["text"])
            for d in data.candidates(qid, depth)
            if d in data.corpus
        ]
        out.append((query, docs))
    return out


class Server:
    def __init__(self, *args: str, threads: int = 1):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        cmd = [
            sys.executable,
            "-m",
            "core_rerank.cli",
            "serve",
            "--model",
            MODEL,
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--max-doc-words",
            str(WORDS),
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--timeout",
            "0",
            *args,
        ]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {' '.join(cmd)}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(180)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def post(url: str, query: str, docs: list[str]) -> float:
    start = time.perf_counter()
    response = httpx.post(
        url + "/v1/rerank",
        json={"model": MODEL, "query": query, "documents": docs, "return_documents": False},
        timeout=None,
    )
    response.raise_for_status()
    return time.perf_counter() - start


def throughput(url: str, requests: list[tuple[str, list[str]]], clients: int) -> dict:
    post(url, *requests[0])  # warm-up
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(lambda r: post(url, *r), requests))
    elapsed = time.perf_counter() - start
    return {
        "requests": len(requests),
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(requests) / elapsed, 3),
        "median_latency_s": round(statistics.median(latencies), 3),
    }


def figure_overhead(queries: int) -> dict:
    import torch

    from core_rerank import CoReReranker

    requests = scifact_requests(queries, 20)
    torch.set_num_threads(1)
    reranker = CoReReranker.from_pretrained(MODEL, device="cpu", dtype="float32", max_doc_words=WORDS)
    reranker.rerank(*requests[0])
    local = []
    for query, docs in requests:
        start = time.perf_counter()
        reranker.rerank(query, docs)
        local.append(time.perf_counter() - start)
    del reranker
    server = Server("--threads", "1")
    try:
        post(server.url, *requests[0])
        remote = [post(server.url, q, d) for q, d in requests]
    finally:
        server.stop()
    med_local, med_remote = statistics.median(local), statistics.median(remote)
    return {
        "figure": "overhead",
        "queries": len(requests),
        "depth": 20,
        "max_doc_words": WORDS,
        "in_process_median_s": round(med_local, 3),
        "server_median_s": round(med_remote, 3),
        "ratio": round(med_remote / med_local, 3),
        "in_process_s": [round(x, 3) for x in local],
        "server_s": [round(x, 3) for x in remote],
    }


def figure_scaleout(count: int, clients: int = 4) -> dict:
    pool = scifact_requests(max(count, 1), 20)
    requests = [pool[i % len(pool)] for i in range(count)]
    out = {"figure": "scaleout", "depth": 20, "max_doc_words": WORDS}
    for name, args in (
        ("uvicorn_1_replica_1_thread", ("--threads", "1")),
        ("ray_2_replicas_1_thread", ("--replicas", "2", "--threads-per-replica", "1")),
    ):
        server = Server(*args)
        try:
            out[name] = throughput(server.url, requests, clients)
        finally:
            server.stop()
    out["speedup"] = round(
        out["ray_2_replicas_1_thread"]["requests_per_s"] / out["uvicorn_1_replica_1_thread"]["requests_per_s"], 3
    )
    return out


def figure_short(count: int, clients: int = 4) -> dict:
    pool = scifact_requests(max(count, 1), 5)
    requests = [pool[i % len(pool)] for i in range(count)]
    server = Server("--threads", "1")
    try:
        return {
            "figure": "short_lists_no_batching",
            "depth": 5,
            "max_doc_words": WORDS,
            **throughput(server.url, requests, clients),
        }
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--figure", choices=("overhead", "scaleout", "short"), required=True)
    parser.add_argument("--queries", type=int, default=5, help="overhead: SciFact queries timed")
    parser.add_argument("--requests", type=int, default=8, help="scaleout/short: requests sent by 4 clients")
    args = parser.parse_args()
    if args.figure == "overhead":
        result = figure_overhead(args.queries)
    elif args.figure == "scaleout":
        result = figure_scaleout(args.requests)
    else:
        result = figure_short(args.requests)
    result["load_average"] = os.getloadavg()
    print(json.dumps(result))


if __name__ == "__main__":
    main()

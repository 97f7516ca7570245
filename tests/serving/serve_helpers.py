"""Start a real ``core-rerank serve`` in a subprocess on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from core_rerank.utils import DEFAULT_MODEL

MODEL_ARGS = ["--model", DEFAULT_MODEL, "--device", "cpu", "--dtype", "float32", "--threads", "1"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_command() -> list[str]:
    """``core-rerank serve`` through the package's own CLI entry point."""
    return [sys.executable, "-m", "core_rerank.cli", "serve"]


class ServerProcess:
    """``core-rerank serve`` on 127.0.0.1:<free port>; ``url``, ``stop()``, ``log()``."""

    def __init__(self, *args: str, env: "dict[str, str] | None" = None, ready_timeout: float = 180.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        full_env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
        self.proc = subprocess.Popen(
            [*serve_command(), *MODEL_ARGS, "--port", str(self.port), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the server did not answer /health in {ready_timeout} s:\n{self.log()}")

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")[-5000:]

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode


QUERIES = [
    (
        "What is the capital of France?",
        [
            "Berlin is the capital of Germany.",
            "Paris is the capital and largest city of France.",
            "The Loire is the longest river in France.",
            "Bananas are rich in potassium.",
        ],
    ),
    (
        "How do vaccines train the immune system?",
        [
            "Vaccines expose the immune system to an antigen so it forms memory cells.",
            "The stock market fell sharply on Monday.",
            "Antibodies bind to specific antigens.",
            "Influenza viruses mutate every year.",
        ],
    ),
    (
        "Which planet is known as the red planet?",
        [
            "Mars appears red because of iron oxide on its surface.",
            "Jupiter is the largest planet.",
            "Venus is the hottest planet in the solar system.",
        ],
    ),
    (
        "Who wrote Pride and Prejudice?",
        [
            "Charles Dickens wrote Oliver Twist.",
            "Jane Austen published Pride and Prejudice in 1813.",
            "Pride is one of the seven deadly sins.",
            "Emily Bronte wrote Wuthering Heights.",
            "Romance novels often feature prejudice.",
        ],
    ),
]

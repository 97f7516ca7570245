"""Serving the app with uvicorn in this process, with a graceful SIGTERM."""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from collections.abc import Iterator
from typing import Any


def run_uvicorn(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    graceful_timeout_s: float | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT: then refuse new connections, finish the requests in
    flight (at most ``graceful_timeout_s``), and return 0."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises the signal after shutting down, which would make the exit status
            # 143; a service manager should see a clean exit after a graceful stop.
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=None if graceful_timeout_s is None else math.ceil(graceful_timeout_s),
        access_log=log_level == "debug",
    )
    server = Server(config)
    server.run()
    return 0 if server.started else 1

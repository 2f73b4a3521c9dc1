"""A Custom-contract function server that a test (or a benchmark) switches between behaviours.

It answers every ``POST .../invoke`` after ``delay_s`` with the call's args as its result,
and measures what a provider would: requests received, the most in flight at once, and the
statuses it answered. Switches:

- ``failing``: answer 502 (an outage behind the provider's gateway), without the delay;
- ``capacity``: answer 429 to a request that arrives while that many are already in flight
  (a provider's concurrency limit).

It runs in the test's own process, on a thread per request (``ThreadingHTTPServer``), so
the worker processes under test reach it over real HTTP.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["SwitchableFunction", "switchable_function"]


@dataclass
class SwitchableFunction:
    url: str = ""
    delay_s: float = 0.0
    failing: bool = False
    capacity: int | None = None
    requests: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        """Back to answering at once, counters at zero."""
        with self.lock:
            self.delay_s, self.failing, self.capacity = 0.0, False, None
            self.requests = self.peak_in_flight = 0
            self.statuses.clear()

    def handle(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests += 1
            if self.failing:
                return self._answer(502, _error("the function is down", "BAD_GATEWAY"))
            if self.capacity is not None and self.in_flight >= self.capacity:
                return self._answer(429, _error("too many concurrent calls", "THROTTLED"))
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            delay_s = self.delay_s
        try:
            time.sleep(delay_s)
        finally:
            with self.lock:
                self.in_flight -= 1
        reply = {"job_id": body["job_id"], "result": body["args"], "success": True}
        with self.lock:
            return self._answer(200, reply)

    def _answer(self, status: int, reply: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.statuses[status] += 1
        return status, reply


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": message, "code": code, "details": {}}


@contextlib.contextmanager
def switchable_function() -> Iterator[SwitchableFunction]:
    """Serve a :class:`SwitchableFunction` on a free port until the block ends."""
    function = SwitchableFunction()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            status, reply = function.handle(json.loads(self.rfile.read(length)))
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if status == 429:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 128
    function.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield function
    finally:
        server.shutdown()
        server.server_close()

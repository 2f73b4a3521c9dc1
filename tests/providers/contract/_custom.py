"""The custom executor's kind: the real reference server, behind a counting front.

The executor talks to a small local HTTP server (the *front*) that speaks the same contract by
passing every request on to a reference server process and its answer back. The front counts
what reaches the platform, which lets a test say "nothing was sent", and answers a 5xx for the
jobs a test asks it to, which the reference server cannot do on demand. Every other behaviour
is the reference server's own: a job that raises, a run past its timeout, and a function at its
concurrency limit with a full queue (started with ``--max-queued-per-function 0``), which the
server refuses with 429 and ``Retry-After``.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent

import httpx

from providers.base import FaasConfig, FaasDeployment, FaasExecutor
from providers.custom import HttpFaasExecutor
from providers.packaging import build_custom_package
from tests.processes import wait_until
from tests.providers.contract._driver import Behaviour, ContractDriver
from tests.providers.reference_server._support import FileGate

#: What the reference server sends with a 429 (``_gate._RETRY_AFTER_S``).
REFERENCE_RETRY_AFTER_S = 1.0

#: The contract's job functions, for every Python-packaged kind.
CONTRACT_HANDLERS = dedent(
    """
    import fcntl
    import os
    import threading


    def reverse(payload):
        return payload[::-1]


    def fail(payload):
        raise RuntimeError("the contract function failed on purpose")


    def hold(payload):
        # Tell the driver this run holds the function's only slot, then wait for its gate.
        open(os.path.join(os.environ["CONTRACT_DIR"], "held"), "w").close()
        with open(os.environ["CONTRACT_GATE"]) as gate:
            fcntl.flock(gate, fcntl.LOCK_SH)
        return payload[::-1]


    def overrun(payload):
        threading.Event().wait(120)
        return payload
    """
)
#: Which of them each behaviour deploys.
HANDLER_OF = {
    Behaviour.SUCCEED: "reverse",
    Behaviour.FAIL: "fail",
    Behaviour.THROTTLE: "hold",
    Behaviour.SERVER_ERROR: "reverse",
    Behaviour.TIME_OUT: "overrun",
}
_SERVER_ERROR_BODY = {"error": "the platform's disk is full", "code": "INTERNAL_ERROR"}
_FORWARD_TIMEOUT = httpx.Timeout(180.0, connect=10.0)
# Not passed on: hop-by-hop, or recomputed by the client that sends the request again.
_DROPPED_HEADERS = frozenset({"host", "content-length", "connection", "accept-encoding"})
_RELAYED_HEADERS = ("content-type", "retry-after")
_JOIN_TIMEOUT_S = 30.0


class ContractFront:
    """A local contract server in front of the reference server: counts, relays, or fails."""

    def __init__(self, upstream: str) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        self._failing: set[str] = set()
        self._lock = threading.Lock()
        self._upstream = httpx.Client(base_url=upstream, timeout=_FORWARD_TIMEOUT)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ContractFront:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=_JOIN_TIMEOUT_S)
        self._upstream.close()

    def count(self, method: str, path: str) -> int:
        with self._lock:
            return self.requests[(method, path)]

    @contextlib.contextmanager
    def failing(self, path: str) -> Iterator[None]:
        """Answer 500 with the contract's error body to every request for ``path``."""
        with self._lock:
            self._failing.add(path)
        try:
            yield
        finally:
            with self._lock:
                self._failing.discard(path)

    def _answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> httpx.Response:
        with self._lock:
            self.requests[(method, path.split("?", 1)[0])] += 1
            failing = path.split("?", 1)[0] in self._failing
        if failing:
            return httpx.Response(500, json=_SERVER_ERROR_BODY)
        return self._upstream.request(method, path, headers=headers, content=body)

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in _DROPPED_HEADERS
                }
                answer = front._answer(self.command, self.path, headers, body)
                self.send_response(answer.status_code)
                for name in _RELAYED_HEADERS:
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_PUT = do_POST = do_DELETE = _relay

            def log_message(self, format: str, *args: object) -> None:
                return None

        return Handler


def hold_the_only_slot(
    executor: FaasExecutor, job_id: int, job_dir: Path, gate: FileGate, held: contextlib.ExitStack
) -> None:
    """Start a run of the ``hold`` handler and wait until it holds the function's only slot.

    It holds the slot until ``gate`` opens. Callbacks run last in, first out: on exit the
    gate opens, then the run is joined.
    """
    runner = threading.Thread(target=executor.invoke, args=(job_id, b"hold"), daemon=True)
    runner.start()
    held.callback(runner.join, _JOIN_TIMEOUT_S)
    held.callback(gate.open)
    wait_until(lambda: (job_dir / "held").exists(), 60.0, "the held run to take the slot")


class CustomDriver(ContractDriver):
    """Drives :class:`~providers.custom.HttpFaasExecutor` against the reference server."""

    executor: HttpFaasExecutor
    reported_metrics = frozenset({"execution_ms", "cold_start"})
    throttle_retry_after_s = REFERENCE_RETRY_AFTER_S

    def __init__(self, front: ContractFront, work_dir: Path, *, api_key: str, env_secret: str):
        self._front = front
        self._work_dir = work_dir
        self._env_secret = env_secret
        source = work_dir / "contract_handlers.py"
        source.write_text(CONTRACT_HANDLERS)
        self._packages = {
            name: build_custom_package(f"contract_handlers:{name}", sources=[source])
            for name in set(HANDLER_OF.values())
        }
        self.executor = HttpFaasExecutor(front.url).with_auth_header(
            "Authorization", f"Bearer {api_key}"
        )
        self.secrets = (api_key, env_secret)

    @contextlib.contextmanager
    def function(self, job_id: int, behaviour: Behaviour) -> Iterator[FaasDeployment]:
        job_dir = self._work_dir / f"job-{job_id}"
        job_dir.mkdir(exist_ok=True)
        with contextlib.ExitStack() as held:
            gate = FileGate(job_dir / "gate")
            held.callback(gate.open)
            config = FaasConfig(
                memory_mb=256,
                # One slot, so one held run makes the platform refuse the next call.
                max_concurrency=1 if behaviour is Behaviour.THROTTLE else None,
                timeout_secs=1 if behaviour is Behaviour.TIME_OUT else 60,
                env_vars={
                    "CONTRACT_SECRET": self._env_secret,
                    "CONTRACT_DIR": str(job_dir),
                    "CONTRACT_GATE": str(gate.path),
                },
            )
            package = self._packages[HANDLER_OF[behaviour]]
            deployment = self.executor.deploy_job(job_id, package, config)
            if behaviour is Behaviour.SERVER_ERROR:
                held.enter_context(self._front.failing(self._invoke_path(job_id)))
            if behaviour is Behaviour.THROTTLE:
                hold_the_only_slot(self.executor, job_id, job_dir, gate, held)
            yield deployment

    def invocations_seen(self, job_id: int) -> int:
        return self._front.count("POST", self._invoke_path(job_id))

    def _invoke_path(self, job_id: int) -> str:
        return f"/api/functions/{self.executor.function_id(job_id)}/invoke"

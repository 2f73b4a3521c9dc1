"""Real processes for the integration tests: Redis servers, workers, FaaS endpoints.

Everything waits on a condition with a deadline (a port that answers, a log line, a Redis
key), never on a fixed sleep.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from dispatcher import Blueprint, BlueprintRunner, JobCall, JobResult, Settings
from providers.base import FaasConfig
from providers.custom import HttpFaasExecutor
from providers.packaging import build_shell_package
from tests import faas_server
from tests.processes import free_port, stop_process, wait_until
from tests.workers import apps

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0

#: Knobs that keep redelivery after a lost worker within seconds (see apps.FAAS_CONFIG).
FAST_KNOBS: dict[str, Any] = {
    "visibility_timeout_s": 7,
    "local_time_limit_s": 3,
    "time_limit_margin_s": 2,
    "retry_cap_s": 1,
    "retry_base_s": 0.1,
    "retry_max": 3,
    "poll_interval_s": 0.02,
    # No exporter: workers of concurrent test runs on one host would race for the port.
    "metrics_port": 0,
}


# -- Redis ----------------------------------------------------------------------------------


@dataclass
class RedisServer:
    """A redis-server of our own, on a free port; restartable when it has a data dir."""

    port: int
    data_dir: Path
    appendonly: bool = False
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.data_dir), "--save", ""]
        if self.appendonly:
            command += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            command += ["--appendonly", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
        wait_until(self._pings, START_TIMEOUT_S, f"redis-server on {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _pings(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A session's own redis-server: other engineers' runs on :6379 cannot disturb it."""
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


_dbs = itertools.cycle(range(1, 16))


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A Redis db of this test's own, flushed before and after (db 0 holds the counters)."""
    url = redis_server.url(next(_dbs))
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()


@pytest.fixture
def counters(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """The Redis where test jobs record what they did (db 0 of the session server)."""
    client = redis.Redis.from_url(redis_server.url(0), decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings.from_redis_url(redis_url, **FAST_KNOBS)


# -- FaaS endpoints --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def reference_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The reference FaaS server as a real process, with jobs 1 (square) and 6 (fails)."""
    with faas_server.reference_server(tmp_path_factory.mktemp("faas")) as url:
        failing_package = build_shell_package(
            'cat >/dev/null\necho \'{"job_id": 6, "result": [], "success": false, '
            '"error": "division by zero"}\'\n'
        )
        with HttpFaasExecutor(url) as executor:
            executor.deploy_job(1, faas_server.squaring_package(), apps.FAAS_CONFIG)
            executor.deploy_job(6, failing_package, apps.FAAS_CONFIG)
        yield url


@dataclass
class FlakyFunction:
    """A Custom-contract invoke endpoint that fails as each call's args ask, then squares.

    Args are JSON: ``{"key": str, "fail": n, "status": 429|503, "retry_after": s, "x": int}``.
    """

    url: str = ""
    attempts: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        request = json.loads(bytes(body["args"]))
        with self.lock:
            seen = self.attempts.setdefault(request["key"], [])
            seen.append(time.monotonic())
            attempt = len(seen)
        if attempt <= request.get("fail", 0):
            headers = {}
            if request.get("retry_after") is not None:
                headers["Retry-After"] = str(request["retry_after"])
            error = {"error": "overloaded", "code": "OVERLOADED", "details": {}}
            return request.get("status", 503), headers, error
        result = list((request.get("x", 0) ** 2).to_bytes(16, "big"))
        return 200, {}, {"job_id": body["job_id"], "result": result, "success": True}


@pytest.fixture(scope="session")
def flaky_function() -> Iterator[FlakyFunction]:
    function = FlakyFunction()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            status, headers, reply = function.handle(json.loads(self.rfile.read(length)))
            data = json.dumps(reply).encode()
            self.send_response(status)
            for name, value in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    function.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield function
    server.shutdown()


# -- workers ---------------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children) at once."""
        stop_process(self.process, signal.SIGKILL)

    def stop(self) -> None:
        stop_process(self.process)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def is_ready(self) -> bool:
        """True once the worker consumes its queues."""
        return WORKER_READY in self.output()


StartWorker = Callable[..., WorkerProcess]

#: What a worker logs once it consumes its queues.
WORKER_READY = " ready."


def spawn_cli(
    args: list[str], env: dict[str, str], log: Path, *, ready: str | None
) -> WorkerProcess:
    """Start ``blueprint-faas ARGS`` in its own process group, its output in ``log``.

    Returns once ``ready`` appears in the log (at once when ``ready`` is None); fails the
    test if the process exits first.
    """
    command = [sys.executable, "-m", "dispatcher", *args]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = WorkerProcess(process, log)
    if ready is None:
        return started
    wait_until(
        lambda: ready in started.output() or process.poll() is not None,
        START_TIMEOUT_S,
        f"blueprint-faas {args[0]}",
    )
    if process.poll() is not None:
        pytest.fail(f"blueprint-faas {args[0]} exited:\n{started.output()}")
    return started


@pytest.fixture
def start_worker(
    settings: Settings,
    tmp_path: Path,
    reference_server: str,
    flaky_function: FlakyFunction,
    redis_server: RedisServer,
) -> Iterator[StartWorker]:
    """Factory of real ``blueprint-faas worker`` processes on this test's Redis db."""
    started: list[WorkerProcess] = []
    counter = itertools.count()

    def start(
        pool: str = "threads",
        concurrency: int = 4,
        jobs: str | None = None,
        worker_settings: Settings | None = None,
        app: str = "tests.workers.apps",
        extra_env: dict[str, str] | None = None,
        wait_ready: bool = True,
        lane: str | None = None,
    ) -> WorkerProcess:
        log = tmp_path / f"worker-{next(counter)}.log"
        env = {
            **os.environ,
            **(worker_settings or settings).to_env(),
            "PYTHONPATH": str(ROOT),
            apps.FAAS_URL_ENV: reference_server,
            apps.FLAKY_URL_ENV: flaky_function.url,
            apps.COUNTER_REDIS_ENV: redis_server.url(0),
            **(extra_env or {}),
        }
        args = ["worker", "--app", app, "--pool", pool]
        args += ["--concurrency", str(concurrency), "--loglevel", "INFO"]
        if jobs is not None:
            args += ["--jobs", jobs]
        if lane is not None:
            args += ["--lane", lane]
        worker = spawn_cli(args, env, log, ready=WORKER_READY if wait_ready else None)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.stop()


@pytest.fixture
def blueprint(
    settings: Settings,
    reference_server: str,
    flaky_function: FlakyFunction,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """The test app as the runner sees it (same module the workers import)."""
    monkeypatch.setenv(apps.FAAS_URL_ENV, reference_server)
    monkeypatch.setenv(apps.FLAKY_URL_ENV, flaky_function.url)
    return apps.build_app().with_settings(settings)


class Run:
    """A runner publishing ``calls`` in a thread; every result it hands over is kept.

    ``producer`` (default: ``calls`` themselves) is what the runner reads, e.g. ``calls``
    yielded at a pace of the test's choosing.
    """

    def __init__(
        self,
        blueprint: Blueprint,
        calls: list[JobCall],
        max_in_flight: int = 20,
        *,
        producer: Iterable[JobCall] | None = None,
    ) -> None:
        self.calls = calls
        self.results: list[JobResult] = []
        self.answered_at: dict[str, float] = {}
        runner = (
            BlueprintRunner.builder(blueprint.settings)
            .app(blueprint)
            .producer(calls if producer is None else producer)
            .consumer(self._keep)
            .max_in_flight(max_in_flight)
        )
        self.thread = threading.Thread(target=runner.run, daemon=True)
        self.thread.start()

    def _keep(self, result: JobResult) -> None:
        self.answered_at.setdefault(result.call_id, time.monotonic())
        self.results.append(result)

    def finish(self, timeout_s: float) -> None:
        self.thread.join(timeout=timeout_s)
        assert not self.thread.is_alive(), f"{len(self.results)} of {len(self.calls)} answered"

    def assert_each_answered_once_and_ok(self) -> None:
        answered = Counter(result.call_id for result in self.results)
        assert answered == Counter(call.call_id for call in self.calls)
        failures = [result.error for result in self.results if not result.ok]
        assert not failures


def flaky_args(key: str, **behaviour: Any) -> bytes:
    return json.dumps({"key": key, **behaviour}).encode()


__all__ = [
    "FAST_KNOBS",
    "FaasConfig",
    "RedisServer",
    "Run",
    "flaky_args",
    "free_port",
    "wait_until",
]

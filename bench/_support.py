"""What the benchmarks share: their own Redis, worker processes, readiness checks, percentiles.

Every process is started in its own session and stopped with :func:`stop_process` from the
caller's ``finally``; readiness is always a condition polled against a deadline, never a
fixed sleep. Worker processes import the benchmark scripts as app modules, so ``bench/`` is
put on their ``PYTHONPATH`` next to the repository root. Raw Celery baselines share their app
profile (:func:`raw_celery_app`), worker command (:func:`start_raw_worker`) and sliding-window
client (:func:`raw_window`), so every comparison with raw Celery is set up the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from celery import Celery

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
START_TIMEOUT_S = 60.0

# The test doubles of ``tests/`` (the switchable function server) serve the benchmarks too,
# rather than a copy here; ``tests`` is not an installed package.
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], Any], what: str, timeout_s: float = START_TIMEOUT_S) -> Any:
    """Poll ``condition`` until it returns a true value.

    Raises
    ------
    TimeoutError
        ``condition`` stayed false for ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM the process's session, then SIGKILL it if it is still there after 15 s."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def start_redis(scratch: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server of the benchmark's own on a free port: (process, URL of db 0)."""
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(scratch)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)

    def pings() -> bool:
        try:
            return bool(redis.Redis(port=port, socket_timeout=0.5).ping())
        except redis.RedisError:
            return process.poll() is not None  # exited: stop waiting, checked below

    wait_until(pings, f"redis-server on {port}")
    if process.poll() is not None:
        raise RuntimeError("redis-server exited at start")
    return process, f"redis://127.0.0.1:{port}/0"


def start_process(
    command: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    ready: Callable[[], bool] | None = None,
    ready_line: str | None = None,
    what: str = "a process",
) -> subprocess.Popen[bytes]:
    """Start ``command`` with output in ``log``; wait for ``ready()`` or ``ready_line`` in it.

    Raises
    ------
    RuntimeError
        The process exited before it was ready (its log tail is in the message).
    """
    full_env = {
        **os.environ,
        **(env or {}),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(BENCH_DIR)]),
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            list(command),
            env=full_env,
            cwd=REPO_ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def is_ready() -> bool:
        if process.poll() is not None:
            return True
        if ready_line is not None and ready_line in log.read_text(errors="replace"):
            return True
        return ready is not None and ready()

    try:
        wait_until(is_ready, what)
    except BaseException:
        stop_process(process)
        raise
    if process.poll() is not None:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{what} exited at start:\n{tail}")
    return process


def blueprint_worker_command(
    app: str, *, pool: str, concurrency: int, loglevel: str, jobs: str | None = None
) -> list[str]:
    """``blueprint-faas worker`` for ``app`` (via the CLI, so gevent patches first)."""
    command = [sys.executable, "-m", "dispatcher", "worker"]
    command += ["--app", app, "--pool", pool, "--concurrency", str(concurrency)]
    command += ["--loglevel", loglevel]
    if jobs is not None:
        command += ["--jobs", jobs]
    return command


WORKER_READY_LINE = " ready."

#: The reliability profile our workers run with, given to raw Celery baselines (``"same"``).
RAW_SAME_PROFILE: Mapping[str, Any] = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "worker_disable_rate_limits": True,
}


def raw_celery_app(redis_url: str, name: str, *, queue: str, profile: str = "same") -> Celery:
    """A plain Celery app (no blueprint-faas code) on ``redis_url``, serving only ``queue``.

    ``profile="same"`` gives it our transport options and serialisation settings
    (``Settings.celery_connection_config``; kombu's Redis transport itself, not ours) and our
    reliability profile (late ack, reject on
    worker loss, prefetch 1, no rate limits): what a comparison then measures is our own code.
    ``profile="stock"`` leaves Celery's defaults (early ack, prefetch 4), JSON both ways.
    Tasks are registered by the caller.
    """
    from celery import Celery
    from kombu import Queue

    from dispatcher import Settings

    app = Celery(name, set_as_current=False)
    if profile == "same":
        app.conf.update(Settings.from_redis_url(redis_url).celery_connection_config())
        app.conf.update(RAW_SAME_PROFILE)
        app.conf.broker_transport = None  # kombu's own Redis transport, not ours
        # Past kombu's default cap of 10 broker connections a gevent worker loses calls (see
        # workers/app.py); a cap it never reaches keeps the baseline measuring speed alone.
        app.conf.broker_transport_options["max_connections"] = 1000
    elif profile == "stock":
        app.conf.update(
            broker_url=redis_url,
            result_backend=redis_url,
            task_serializer="json",
            result_serializer="json",
            accept_content=["json"],
        )
    else:
        raise ValueError(f"unknown raw Celery profile: {profile!r}")
    app.conf.task_queues = [Queue(queue)]
    app.conf.task_default_queue = queue
    return app


def start_raw_worker(
    app: str,
    log: Path,
    *,
    pool: str,
    concurrency: int,
    loglevel: str,
    queue: str,
    env: Mapping[str, str] | None = None,
    what: str = "raw worker",
) -> subprocess.Popen[bytes]:
    """A plain ``celery -A app worker`` started the way our workers are started.

    Same pool, concurrency and log level, ``--without-mingle --without-gossip``; run as
    ``python -m celery`` so that ``--pool gevent`` monkey-patches before anything is imported.
    """
    command = [sys.executable, "-m", "celery", "-A", app, "worker"]
    command += ["--pool", pool, "--concurrency", str(concurrency), "--loglevel", loglevel]
    command += ["--queues", queue, "--without-mingle", "--without-gossip"]
    command += ["--hostname", "bench-raw@%h"]
    return start_process(command, log, env=env, ready_line=WORKER_READY_LINE, what=what)


def raw_window(
    app: Celery,
    task: str,
    args: Sequence[Any],
    *,
    queue: str,
    calls: int,
    window: int,
    timeout_s: float = 600.0,
) -> list[Any]:
    """Send ``calls`` tasks ``task(*args)`` keeping ``window`` in flight; their results.

    The leanest raw-Celery loop we could write, in one thread: send up to the window, drain the
    result backend's pub/sub, and refill from the count the ``AsyncResult.then`` callbacks
    keep. Results come back in completion order.

    Raises
    ------
    TimeoutError
        Not every result arrived within ``timeout_s``.
    """
    backend = app.backend
    values: list[Any] = []
    pending: dict[str, Any] = {}  # Celery holds then() owners weakly
    sent = 0

    def fulfilled(result: Any) -> None:
        pending.pop(result.id, None)
        values.append(result.result)

    deadline = time.monotonic() + timeout_s
    while len(values) < calls:
        while sent < calls and sent - len(values) < window:
            result = app.send_task(task, args=tuple(args), queue=queue)
            pending[result.id] = result
            result.then(fulfilled)
            sent += 1
        backend.result_consumer.drain_events(timeout=1.0)
        if time.monotonic() > deadline:
            raise TimeoutError(f"raw: {len(values)} of {calls} results arrived")
    return values


def percentile_ms(samples_s: Sequence[float], percentile: float) -> float:
    """The ``percentile`` of ``samples_s`` in milliseconds (nearest rank; 50 is the median)."""
    ordered = sorted(samples_s)
    if percentile == 50:
        return statistics.median(ordered) * 1000
    index = min(len(ordered) - 1, round(percentile / 100 * (len(ordered) - 1)))
    return ordered[index] * 1000


def log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by every live process of group ``pgid``.

    A process started by :func:`start_process` leads its own group, so this counts a worker
    and its pool children together.
    """
    total_ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name (which may hold spaces) start after the last ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            total_ticks += int(fields[11]) + int(fields[12])
    return total_ticks / _CLOCK_TICKS


class TimedCall:
    """One call of :func:`timed_run`: its result and when it was sent and answered."""

    def __init__(self, sent_at: float) -> None:
        self.sent_at = sent_at
        self.done_at = 0.0
        self.result: Any = None

    @property
    def latency_s(self) -> float:
        return self.done_at - self.sent_at


def timed_run(
    blueprint: Any, calls: Sequence[Any], *, max_in_flight: int, gap_s: float = 0.0
) -> tuple[list[TimedCall], float]:
    """Run ``calls`` through a ``BlueprintRunner`` of ``blueprint``; (timed calls, start).

    The producer yields a call every ``gap_s`` (all at once when 0); each is timed from the
    moment it is yielded to the moment its result reaches the consumer.
    """
    from dispatcher import BlueprintRunner

    timed: dict[str, TimedCall] = {}
    started = time.perf_counter()

    def producer() -> Any:
        for index, call in enumerate(calls):
            if gap_s:
                delay_s = started + index * gap_s - time.perf_counter()
                if delay_s > 0:
                    time.sleep(delay_s)
            timed[call.call_id] = TimedCall(time.perf_counter())
            yield call

    def consumer(result: Any) -> None:
        entry = timed[result.call_id]
        entry.done_at = time.perf_counter()
        entry.result = result

    runner = (
        BlueprintRunner.builder(blueprint.settings)
        .app(blueprint)
        .producer(producer)
        .consumer(consumer)
        .max_in_flight(max_in_flight)
    )
    runner.run()
    return [timed[call.call_id] for call in calls], started

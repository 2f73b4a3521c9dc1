"""Benchmark how close one worker process gets to its ideal rate on I/O-bound FaaS jobs.

Question: with jobs forwarded to a function that takes 100 ms, how many jobs per second does
one worker process (threads or gevent pool) sustain at concurrency C, against the ideal
``C / 0.1 s``, and against raw Celery doing the same forwarding?

    .venv/bin/python bench/io_concurrency.py [--concurrency 50,200] [--pool threads]
        [--jobs-per-slot 10] [--sleep-ms 100] [--rounds 3] [--batch-max-calls 16]

The function is a small ASGI app in this module (``function_app``), served by uvicorn in its
own process, answering the Custom FaaS contract's invoke endpoint after sleeping
``--sleep-ms``: it waits on a timer, not a CPU, so it measures the worker, not the function.

For each concurrency a worker with that pool and concurrency is started; the runner's
``max_in_flight`` is twice the concurrency (so the runner is not the bound), and the worker's
HTTP pool is ``providers._pool.DEFAULT_LIMITS`` (its connection cap is printed: above it the
pool, not the worker, is the bound).

The same run measures our runner with batching off (``batch_max_calls`` 1: today's wire,
one message per call) and two baselines, interleaved with our worker round by round:

* raw Celery: a plain Celery app (``raw_app``, no blueprint-faas code in the task path) whose
  one task POSTs the same body to the same function with httpx and returns its result. It is
  served by a plain ``celery -A io_concurrency:raw_app worker`` started like ours (same pool,
  concurrency and log level, ``--without-mingle --without-gossip``) on the same redis-server,
  with our transport settings and reliability profile (late ack, reject on worker loss,
  prefetch 1, no rate limits). Its httpx client is one per worker process, created on first
  use, with the same ``DEFAULT_LIMITS`` and a 30 s timeout. The client keeps a sliding window of
  ``2 x C`` tasks in flight, as the runner does (``send_task``, ``AsyncResult.then``, one
  thread draining the result backend's pub/sub), and checks every result. Ours / raw is what
  blueprint-faas costs on top of Celery for this work.
* direct: the function called with C threads of httpx (one client, pool size C), which shows
  what the function and the machine allow.

Also printed: CPU ms per job of our worker and of the raw worker (process groups), and of the
client process for each (the runner, the raw sending loop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from _support import (
    WORKER_READY_LINE,
    blueprint_worker_command,
    free_port,
    group_cpu_s,
    log_tail,
    raw_celery_app,
    raw_window,
    start_process,
    start_raw_worker,
    start_redis,
    stop_process,
)

from dispatcher import Blueprint, BlueprintRunner, JobCall, JobResult, Settings
from providers._pool import DEFAULT_LIMITS
from providers.base import FaasConfig
from providers.custom import HttpFaasExecutor

if TYPE_CHECKING:
    import subprocess

    from celery import Celery

SLEEPY_JOB = 7
INVOKE_PATH = f"/api/functions/blueprint-job-{SLEEPY_JOB}/invoke"
RAW_TASK = "bench.invoke"
RAW_QUEUE = "bench.raw"
FUNCTION_URL_ENV = "BENCH_FUNCTION_URL"
_RAW_URL_ENV = "BENCH_RAW_REDIS_URL"
_SLEEP_MS_ENV = "BENCH_SLEEP_MS"
_CONFIG = FaasConfig(timeout_secs=10, memory_mb=128)
_ARGS = bytes(range(16))

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def function_app(scope: _Scope, receive: _Receive, send: _Send) -> None:
    """An invoke endpoint of the Custom FaaS contract that sleeps, then echoes the args."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await asyncio.sleep(float(os.environ.get(_SLEEP_MS_ENV, "100")) / 1000)
    request = json.loads(body or b"{}")
    reply = json.dumps({"result": request.get("args", []), "success": True}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(reply))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": reply})


def build_blueprint() -> Blueprint:
    """The worker's app: job 7 forwarded to the sleeping function named by the environment."""
    executor = HttpFaasExecutor(os.environ.get(FUNCTION_URL_ENV, "http://127.0.0.1:1"))
    executor.configure_job(SLEEPY_JOB, _CONFIG)
    return Blueprint().with_faas_executor(SLEEPY_JOB, executor)


#: ``--app io_concurrency:blueprint`` (a factory: the URL is read in the worker's process).
blueprint = build_blueprint

#: The raw Celery baseline's app (``-A io_concurrency:raw_app``); Redis URL from its env.
raw_app = raw_celery_app(
    os.environ.get(_RAW_URL_ENV, "redis://127.0.0.1:6379/0"), "bench-raw", queue=RAW_QUEUE
)

_raw_http: httpx.Client | None = None
_raw_http_lock = threading.Lock()


def _raw_client() -> httpx.Client:
    """The raw worker process's one httpx client, made on first use (not at import)."""
    global _raw_http
    if _raw_http is None:
        with _raw_http_lock:
            if _raw_http is None:
                _raw_http = httpx.Client(
                    base_url=os.environ[FUNCTION_URL_ENV], limits=DEFAULT_LIMITS, timeout=30
                )
    return _raw_http


@raw_app.task(name=RAW_TASK)
def raw_invoke(args: list[int]) -> Any:
    """POST job 7's call to the function and return its result: nothing else."""
    response = _raw_client().post(INVOKE_PATH, json={"job_id": SLEEPY_JOB, "args": args})
    response.raise_for_status()
    return response.json()["result"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="50,200", help="worker concurrencies to try")
    parser.add_argument("--pool", default="threads", choices=["threads", "gevent"])
    parser.add_argument("--jobs-per-slot", type=int, default=10, help="jobs = this x concurrency")
    parser.add_argument("--sleep-ms", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--batch-max-calls", type=int, default=Settings().batch_max_calls, help="ours' batches"
    )
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-io-") as scratch:
        root = Path(scratch)
        processes: list[subprocess.Popen[bytes]] = []
        try:
            redis_process, redis_url = start_redis(root)
            processes.append(redis_process)
            function_url = start_function(root, args.sleep_ms, processes)
            settings = Settings.from_redis_url(
                redis_url, metrics_port=0, batch_max_calls=args.batch_max_calls
            )
            print(
                f"function sleeps {args.sleep_ms:.0f} ms; pool={args.pool}; worker HTTP pool "
                f"max_connections={DEFAULT_LIMITS.max_connections}; {args.rounds} rounds, medians"
            )
            print(
                f"{'concurrency':<13}{'ideal/s':>9}{'ours/s':>9}{'of ideal':>10}{'calls/msg':>10}"
                f"{'unbatched/s':>12}{'raw/s':>9}{'of ideal':>10}{'ours/raw':>10}"
                f"{'direct/s':>10}{'of ideal':>10}"
                "   CPU ms/job ours vs unbatched vs raw: worker; client; box"
            )
            client = raw_celery_app(redis_url, "bench-raw-client", queue=RAW_QUEUE)
            shared_pids = (redis_process.pid, processes[-1].pid)  # Redis and the function
            for level in levels:
                urls = (redis_url, function_url)
                _one_level(root, settings, client, urls, shared_pids, level, args, processes)
            print(
                f"box: CPU of every process (worker, client, Redis, function) per job; at "
                f"{os.cpu_count()} busy cores it allows at most {os.cpu_count()} s / box jobs/s"
            )
        except BaseException:
            for log in sorted(root.glob("*.log")):
                print(f"--- {log.name} tail:\n{log_tail(log)}", file=sys.stderr)
            raise
        finally:
            for process in reversed(processes):
                stop_process(process)


def start_function(root: Path, sleep_ms: float, processes: list[subprocess.Popen[bytes]]) -> str:
    """Serve ``function_app`` with uvicorn on a free port and return its URL.

    The server's process is appended to ``processes``, which the caller stops.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", "io_concurrency:function_app", "--host"]
    command += ["127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    command += ["--backlog", "4096"]

    def answers() -> bool:
        try:
            httpx.post(f"{url}/probe", content=b"{}", timeout=2)
        except httpx.TransportError:
            return False
        return True

    env = {_SLEEP_MS_ENV: str(sleep_ms)}
    process = start_process(command, root / "function.log", env=env, ready=answers, what="fn")
    processes.append(process)
    return url


def _one_level(
    root: Path,
    settings: Settings,
    raw_client: Celery,
    urls: tuple[str, str],
    shared_pids: tuple[int, ...],
    level: int,
    args: argparse.Namespace,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    redis_url, function_url = urls
    command = blueprint_worker_command(
        "io_concurrency:blueprint", pool=args.pool, concurrency=level, loglevel="INFO"
    )
    worker = start_process(
        command,
        root / f"worker-{level}.log",
        env={**settings.to_env(), FUNCTION_URL_ENV: function_url},
        ready_line=WORKER_READY_LINE,
        what=f"worker c={level}",
    )
    processes.append(worker)
    raw_worker = start_raw_worker(
        "io_concurrency:raw_app",
        root / f"raw-worker-{level}.log",
        pool=args.pool,
        concurrency=level,
        loglevel="INFO",
        queue=RAW_QUEUE,
        env={_RAW_URL_ENV: redis_url, FUNCTION_URL_ENV: function_url},
        what=f"raw worker c={level}",
    )
    processes.append(raw_worker)
    try:
        jobs = level * args.jobs_per_slot
        ideal = level / (args.sleep_ms / 1000)
        # Warm-up: threads, connections, imports on every side.
        unbatched = settings.model_copy(update={"batch_max_calls": 1})
        calls_per_message: list[float] = []

        def ours(run_settings: Settings) -> float:
            rate, per_message = _through_worker(run_settings, jobs, level)
            if run_settings is settings:
                calls_per_message.append(per_message)
            return rate

        _through_worker(settings, level, level)
        _through_raw(raw_client, level, level)
        sides: dict[str, tuple[int, Callable[[], float]]] = {
            "ours": (worker.pid, lambda: ours(settings)),
            "unbatched": (worker.pid, lambda: ours(unbatched)),
            "raw": (raw_worker.pid, lambda: _through_raw(raw_client, jobs, level)),
        }
        rates: dict[str, list[float]] = {name: [] for name in (*sides, "direct")}
        cpu_ms: dict[str, list[tuple[float, float, float]]] = {name: [] for name in sides}
        for _ in range(args.rounds):
            for name, (pid, run) in sides.items():
                # One worker process runs on one core at most (the GIL): its CPU per job
                # bounds it; all processes together share the box's cores.
                worker_cpu_s, client_cpu_s = group_cpu_s(pid), time.process_time()
                shared_cpu_s = sum(group_cpu_s(shared) for shared in shared_pids)
                rates[name].append(run())
                worker_cpu_s = group_cpu_s(pid) - worker_cpu_s
                client_cpu_s = time.process_time() - client_cpu_s
                shared_cpu_s = sum(group_cpu_s(shared) for shared in shared_pids) - shared_cpu_s
                box_cpu_s = worker_cpu_s + client_cpu_s + shared_cpu_s
                cpu_ms[name].append(
                    tuple(
                        seconds * 1000 / jobs for seconds in (worker_cpu_s, client_cpu_s, box_cpu_s)
                    )
                )
            rates["direct"].append(_direct(function_url, jobs, level))
        median = {name: statistics.median(values) for name, values in rates.items()}
        ours_rate, raw_rate, direct = median["ours"], median["raw"], median["direct"]

        def cpu(part: int) -> str:
            return " vs ".join(
                f"{statistics.median(sample[part] for sample in cpu_ms[name]):.2f}"
                for name in sides
            )

        print(
            f"{level:<13}{ideal:>9.0f}{ours_rate:>9.0f}{ours_rate / ideal:>10.0%}"
            f"{statistics.median(calls_per_message):>10.1f}{median['unbatched']:>12.0f}"
            f"{raw_rate:>9.0f}{raw_rate / ideal:>10.0%}{ours_rate / raw_rate:>10.2f}"
            f"{direct:>10.0f}{direct / ideal:>10.0%}   {cpu(0)}; {cpu(1)}; {cpu(2)}"
        )
    finally:
        for process in (raw_worker, worker):
            stop_process(process)
            processes.remove(process)


def _through_worker(settings: Settings, jobs: int, level: int) -> tuple[float, float]:
    """Jobs per second through runner, Redis, worker and function, and calls per message.

    Every result is checked.
    """
    results: list[JobResult] = []
    started = time.perf_counter()
    summary = (
        BlueprintRunner.builder(settings)
        .producer([JobCall(SLEEPY_JOB, _ARGS) for _ in range(jobs)])
        .consumer(results.append)
        .max_in_flight(2 * level)
        .run()
    )
    elapsed_s = time.perf_counter() - started
    failed = [result.error for result in results if not result.ok]
    if summary.succeeded != jobs or failed:
        raise RuntimeError(f"{summary}; e.g. {failed[:1]}")
    return jobs / elapsed_s, jobs / max(1, summary.messages)


def _through_raw(app: Celery, jobs: int, level: int) -> float:
    """Jobs per second through raw Celery: the runner's window, every result checked."""
    started = time.perf_counter()
    values = raw_window(
        app, RAW_TASK, (list(_ARGS),), queue=RAW_QUEUE, calls=jobs, window=2 * level
    )
    elapsed_s = time.perf_counter() - started
    wrong = [value for value in values if value != list(_ARGS)]
    if len(values) != jobs or wrong:
        raise RuntimeError(f"raw: {len(values)} of {jobs} results, e.g. wrong: {wrong[:1]}")
    return jobs / elapsed_s


def _direct(function_url: str, jobs: int, level: int) -> float:
    """Jobs per second calling the function directly from ``level`` threads (the baseline)."""
    limits = httpx.Limits(max_connections=level, max_keepalive_connections=level)
    body = {"job_id": SLEEPY_JOB, "args": list(_ARGS)}
    with httpx.Client(base_url=function_url, limits=limits, timeout=30) as client:

        def call(_: int) -> None:
            client.post(INVOKE_PATH, json=body).raise_for_status()

        with ThreadPoolExecutor(level) as pool:
            list(pool.map(call, range(level)))  # warm-up: connections
            started = time.perf_counter()
            list(pool.map(call, range(jobs)))
            return jobs / (time.perf_counter() - started)


if __name__ == "__main__":
    main()

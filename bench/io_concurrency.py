"""Benchmark how close one worker process gets to its ideal rate on I/O-bound FaaS jobs.

Question: with jobs forwarded to a function that takes 100 ms, how many jobs per second does
one worker process (threads or gevent pool) sustain at concurrency C, against the ideal
``C / 0.1 s``?

    .venv/bin/python bench/io_concurrency.py [--concurrency 50,200] [--pool threads]
        [--jobs-per-slot 10] [--sleep-ms 100] [--rounds 3]

The function is a small ASGI app in this module (``function_app``), served by uvicorn in its
own process, answering the Custom FaaS contract's invoke endpoint after sleeping
``--sleep-ms``: it waits on a timer, not a CPU, so it measures the worker, not the function.
The same run measures the baseline: the function called directly with C threads of httpx
(one client, pool size C), which shows what the function and the machine allow.

For each concurrency a worker with that pool and concurrency is started; the runner's
``max_in_flight`` is twice the concurrency (so the runner is not the bound), and the worker's
HTTP pool is ``providers._http.DEFAULT_LIMITS`` (its connection cap is printed: above it the
pool, not the worker, is the bound).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
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
    start_process,
    start_redis,
    stop_process,
)

from dispatcher import Blueprint, BlueprintRunner, JobCall, JobResult, Settings
from providers._http import DEFAULT_LIMITS
from providers.base import FaasConfig
from providers.custom import HttpFaasExecutor

if TYPE_CHECKING:
    import subprocess

SLEEPY_JOB = 7
_FUNCTION_URL_ENV = "BENCH_FUNCTION_URL"
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
    executor = HttpFaasExecutor(os.environ.get(_FUNCTION_URL_ENV, "http://127.0.0.1:1"))
    executor.configure_job(SLEEPY_JOB, _CONFIG)
    return Blueprint().with_faas_executor(SLEEPY_JOB, executor)


#: ``--app io_concurrency:blueprint`` (a factory: the URL is read in the worker's process).
blueprint = build_blueprint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="50,200", help="worker concurrencies to try")
    parser.add_argument("--pool", default="threads", choices=["threads", "gevent"])
    parser.add_argument("--jobs-per-slot", type=int, default=10, help="jobs = this x concurrency")
    parser.add_argument("--sleep-ms", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-io-") as scratch:
        root = Path(scratch)
        processes: list[subprocess.Popen[bytes]] = []
        try:
            redis_process, redis_url = start_redis(root)
            processes.append(redis_process)
            function_url = _start_function(root, args.sleep_ms, processes)
            settings = Settings.from_redis_url(redis_url, metrics_port=0)
            print(
                f"function sleeps {args.sleep_ms:.0f} ms; pool={args.pool}; worker HTTP pool "
                f"max_connections={DEFAULT_LIMITS.max_connections}; {args.rounds} rounds, medians"
            )
            print(
                f"{'concurrency':<13}{'ideal/s':>9}{'worker/s':>10}{'of ideal':>10}"
                f"{'direct/s':>10}{'of ideal':>10}   CPU ms/job: worker, runner"
            )
            for level in levels:
                _one_level(root, settings, function_url, level, args, processes)
        except BaseException:
            for log in sorted(root.glob("*.log")):
                print(f"--- {log.name} tail:\n{log_tail(log)}", file=sys.stderr)
            raise
        finally:
            for process in reversed(processes):
                stop_process(process)


def _start_function(root: Path, sleep_ms: float, processes: list[subprocess.Popen[bytes]]) -> str:
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
    function_url: str,
    level: int,
    args: argparse.Namespace,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    command = blueprint_worker_command(
        "io_concurrency:blueprint", pool=args.pool, concurrency=level, loglevel="INFO"
    )
    worker = start_process(
        command,
        root / f"worker-{level}.log",
        env={**settings.to_env(), _FUNCTION_URL_ENV: function_url},
        ready_line=WORKER_READY_LINE,
        what=f"worker c={level}",
    )
    processes.append(worker)
    try:
        jobs = level * args.jobs_per_slot
        ideal = level / (args.sleep_ms / 1000)
        _through_worker(settings, level, level)  # warm-up: threads, connections
        worker_rates, direct_rates, worker_cpu_ms, runner_cpu_ms = [], [], [], []
        for _ in range(args.rounds):
            # One worker process runs on one core at most (the GIL): its CPU per job bounds it.
            worker_cpu_s, runner_cpu_s = group_cpu_s(worker.pid), time.process_time()
            worker_rates.append(_through_worker(settings, jobs, level))
            worker_cpu_ms.append((group_cpu_s(worker.pid) - worker_cpu_s) * 1000 / jobs)
            runner_cpu_ms.append((time.process_time() - runner_cpu_s) * 1000 / jobs)
            direct_rates.append(_direct(function_url, jobs, level))
        worker_rate = statistics.median(worker_rates)
        direct_rate = statistics.median(direct_rates)
        print(
            f"{level:<13}{ideal:>9.0f}{worker_rate:>10.0f}{worker_rate / ideal:>10.0%}"
            f"{direct_rate:>10.0f}{direct_rate / ideal:>10.0%}   "
            f"{statistics.median(worker_cpu_ms):.2f}, {statistics.median(runner_cpu_ms):.2f}"
        )
    finally:
        stop_process(worker)
        processes.remove(worker)


def _through_worker(settings: Settings, jobs: int, level: int) -> float:
    """Jobs per second through runner, Redis, worker and function; every result is checked."""
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
    return jobs / elapsed_s


def _direct(function_url: str, jobs: int, level: int) -> float:
    """Jobs per second calling the function directly from ``level`` threads (the baseline)."""
    limits = httpx.Limits(max_connections=level, max_keepalive_connections=level)
    body = {"job_id": SLEEPY_JOB, "args": list(_ARGS)}
    with httpx.Client(base_url=function_url, limits=limits, timeout=30) as client:

        def call(_: int) -> None:
            client.post("/api/functions/blueprint-job-7/invoke", json=body).raise_for_status()

        with ThreadPoolExecutor(level) as pool:
            list(pool.map(call, range(level)))  # warm-up: connections
            started = time.perf_counter()
            list(pool.map(call, range(jobs)))
            return jobs / (time.perf_counter() - started)


if __name__ == "__main__":
    main()

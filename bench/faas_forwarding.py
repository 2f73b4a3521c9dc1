"""Benchmark what forwarding a job through the dispatcher adds to a direct FaaS call.

Question: for one call at a time, how much latency do the runner, Redis, the worker and the
result backend add on top of calling the same warm function directly over HTTP?

    .venv/bin/python bench/faas_forwarding.py [--calls 200] [--bootstrap shell|python]
        [--pool threads] [--concurrency 4] [--gap-ms 40] [--warm-instances 2]

The benchmark starts its own redis-server, the reference server
(``python -m providers.reference_server``) with one deployed function, and one worker whose
app forwards job 1 to it. It then alternates, call by call, a *forwarded* call (a JobCall
through a running ``BlueprintRunner`` with ``max_in_flight`` 1, timed from the producer
yielding it to the consumer receiving its JobResult) and a *direct* call (httpx POST to
``/api/functions/<id>/invoke``). Both are paced by ``--gap-ms`` so the server's one-shot warm
instances have been restarted before each call, and both see the same warm pool. Forwarded
calls go through two runners in turn: one with the settings' batching (a lone call is never
held back for a batch) and one with ``batch_max_calls`` 1 (one message per call, the wire
before batching), so what batching costs a lone call is measured in the same run.

Printed: p50 and p99 of each, the p50 difference (target: at most 5 ms) and a breakdown of the
forwarded call: the invoke as the worker timed it (``JobResult.metrics.total_ms``) and the rest
(publish, queue, worker start, result store and notification).
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from _support import (
    WORKER_READY_LINE,
    blueprint_worker_command,
    free_port,
    log_tail,
    percentile_ms,
    start_process,
    start_redis,
    stop_process,
)

from dispatcher import Blueprint, BlueprintRunner, JobCall, JobResult, Settings
from providers.base import FaasConfig
from providers.custom import HttpFaasExecutor
from providers.packaging import build_custom_package, build_shell_package

if TYPE_CHECKING:
    import subprocess

FORWARDED_JOB = 1
_FAAS_URL_ENV = "BENCH_FAAS_URL"
_CONFIG = FaasConfig(timeout_secs=10, memory_mb=128)
_ARGS = bytes(range(16))
_SHELL_SCRIPT = 'cat > /dev/null\necho \'{"result": [1, 2, 3, 4], "success": true}\'\n'
_HANDLER_SOURCE = "def reverse(payload):\n    return payload[::-1]\n"


def build_blueprint() -> Blueprint:
    """The worker's app: job 1 forwarded to the reference server named by the environment."""
    executor = HttpFaasExecutor(os.environ.get(_FAAS_URL_ENV, "http://127.0.0.1:1"))
    executor.configure_job(FORWARDED_JOB, _CONFIG)
    return Blueprint().with_faas_executor(FORWARDED_JOB, executor)


#: ``--app faas_forwarding:blueprint`` (a factory: the URL is read in the worker's process).
blueprint = build_blueprint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls of each kind")
    parser.add_argument("--bootstrap", choices=["shell", "python"], default="shell")
    parser.add_argument("--pool", default="threads", choices=["threads", "gevent", "prefork"])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--gap-ms", type=float, default=40.0, help="pause before each call")
    parser.add_argument("--warm-instances", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-forwarding-") as scratch:
        root = Path(scratch)
        processes: list[subprocess.Popen[bytes]] = []
        try:
            redis_process, redis_url = start_redis(root)
            processes.append(redis_process)
            faas_url = _start_reference_server(root, processes)
            function_id = _deploy(root, faas_url, args)
            settings = Settings.from_redis_url(redis_url, metrics_port=0)
            command = blueprint_worker_command(
                "faas_forwarding:blueprint",
                pool=args.pool,
                concurrency=args.concurrency,
                loglevel="INFO",
            )
            env = {**settings.to_env(), _FAAS_URL_ENV: faas_url}
            processes.append(
                start_process(
                    command,
                    root / "worker.log",
                    env=env,
                    ready_line=WORKER_READY_LINE,
                    what="the worker",
                )
            )
            _compare(settings, faas_url, function_id, args)
        except BaseException:
            for name in ("server.log", "worker.log"):
                print(f"--- {name} tail:\n{log_tail(root / name)}", file=sys.stderr)
            raise
        finally:
            for process in reversed(processes):
                stop_process(process)


def _start_reference_server(root: Path, processes: list[subprocess.Popen[bytes]]) -> str:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "providers.reference_server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--data-dir", str(root / "faas")]

    def answers() -> bool:
        try:
            httpx.get(f"{url}/api/functions/readiness-probe", timeout=1)
        except httpx.TransportError:
            return False
        return True

    processes.append(start_process(command, root / "server.log", ready=answers, what="server"))
    return url


def _deploy(root: Path, faas_url: str, args: argparse.Namespace) -> str:
    if args.bootstrap == "shell":
        package = build_shell_package(_SHELL_SCRIPT)
    else:
        source = root / "bench_handler.py"
        source.write_text(_HANDLER_SOURCE)
        package = build_custom_package(
            "bench_handler:reverse", sources=[source], python=sys.executable
        )
    with HttpFaasExecutor(faas_url) as executor:
        executor.deploy_job(FORWARDED_JOB, package, _CONFIG)
        executor.warm(FORWARDED_JOB, args.warm_instances)
        return executor.function_id(FORWARDED_JOB)


class _OneAtATime:
    """A producer and consumer pair that lets the caller push calls one by one and time them."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[JobCall | None] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[tuple[JobResult, float]] = queue.SimpleQueue()
        self._sent_at = 0.0

    def producer(self) -> Iterator[JobCall]:
        while (call := self._calls.get()) is not None:
            self._sent_at = time.perf_counter()
            yield call

    def consumer(self, result: JobResult) -> None:
        self._results.put((result, time.perf_counter() - self._sent_at))

    def call(self, job_call: JobCall) -> tuple[JobResult, float]:
        self._calls.put(job_call)
        return self._results.get(timeout=60)

    def close(self) -> None:
        self._calls.put(None)


def _compare(settings: Settings, faas_url: str, function_id: str, args: argparse.Namespace) -> None:
    # Our runner as configured, and with batching off (today's wire), alternating.
    sides = {"forwarded": settings, "unbatched": settings.model_copy(update={"batch_max_calls": 1})}
    pairs = {name: _OneAtATime() for name in sides}
    runs = []
    for name, side_settings in sides.items():
        runner = (
            BlueprintRunner.builder(side_settings)
            .producer(pairs[name].producer)
            .consumer(pairs[name].consumer)
            .max_in_flight(1)
            .build()
        )
        runs.append(threading.Thread(target=runner.run, name=f"bench-{name}", daemon=True))
        runs[-1].start()
    forwarded_s: dict[str, list[float]] = {name: [] for name in sides}
    invoke_s: dict[str, list[float]] = {name: [] for name in sides}
    direct_s: list[float] = []
    gap_s = args.gap_ms / 1000
    body = {"job_id": FORWARDED_JOB, "args": list(_ARGS)}
    try:
        with httpx.Client(base_url=faas_url, timeout=30) as client:
            url = f"/api/functions/{function_id}/invoke"
            for index in range(args.calls + 10):  # the first 10 of each warm up
                # Each side goes first every other call: neither always follows the direct one.
                order = list(pairs.items())
                for name, pair in order if index % 2 else reversed(order):
                    time.sleep(gap_s)
                    result, elapsed_s = pair.call(JobCall(FORWARDED_JOB, _ARGS))
                    if not result.ok or result.metrics is None:
                        raise RuntimeError(f"forwarded call failed: {result.error}")
                    if index >= 10:
                        forwarded_s[name].append(elapsed_s)
                        invoke_s[name].append(result.metrics.total_ms / 1000)
                time.sleep(gap_s)
                started = time.perf_counter()
                response = client.post(url, json=body)
                direct_elapsed_s = time.perf_counter() - started
                if response.status_code != 200 or not response.json().get("success"):
                    raise RuntimeError(f"direct call failed: {response.text}")
                if index >= 10:
                    direct_s.append(direct_elapsed_s)
    finally:
        for pair in pairs.values():
            pair.close()
        for run in runs:
            run.join(timeout=30)

    print(
        f"{args.calls} sequential calls each; {args.bootstrap} bootstrap, pool={args.pool} "
        f"concurrency={args.concurrency}, gap {args.gap_ms:.0f} ms; unbatched: batch_max_calls 1"
    )
    print(f"{'':<40}{'p50 ms':>10}{'p99 ms':>10}")
    rows = [("direct (httpx -> FaaS)", direct_s)]
    for name in sides:
        overhead_s = [t - i for t, i in zip(forwarded_s[name], invoke_s[name], strict=True)]
        rows += [
            (f"{name} (runner -> worker -> FaaS)", forwarded_s[name]),
            (f"  of {name}: invoke in worker", invoke_s[name]),
            (f"  of {name}: dispatch path", overhead_s),
        ]
    for label, samples in rows:
        print(f"{label:<40}{percentile_ms(samples, 50):>10.2f}{percentile_ms(samples, 99):>10.2f}")
    for name in sides:
        added_ms = percentile_ms(forwarded_s[name], 50) - percentile_ms(direct_s, 50)
        ratio = percentile_ms(forwarded_s[name], 50) / percentile_ms(direct_s, 50)
        print(f"{name}: forwarding adds {added_ms:.2f} ms at p50 (x{ratio:.2f}); target: <= 5 ms")


if __name__ == "__main__":
    main()

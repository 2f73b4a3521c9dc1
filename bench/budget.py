"""Benchmark the shared concurrency budget: 4 worker processes against a function limited to C.

Question: several worker processes (hosts, in production) forward one job to a provider
that runs at most C calls at once and answers 429 past that. How many throttled responses
does the provider send, how many calls fail, and how long does the batch take, without a
budget (each worker sends whenever it has a free slot; a 429 is retried with backoff) and
with the budget declared in the executor's options (``limits.max_account_concurrency = C``:
every worker takes a lease from one Redis semaphore first)? Target: with the budget the
provider answers no 429.

    .venv/bin/python bench/budget.py [--calls 200] [--capacity 4] [--workers 4]
        [--concurrency 8] [--job-ms 50] [--rounds 3] [--pool gevent]

The provider is the switchable function server of the tests (:mod:`tests.switchable_function`)
in this process, with ``capacity`` C. Job 0 has no budget, job 1 the budget C, each on its own
URL path (its own scope); every worker serves both, and the rounds alternate them. Retries:
5 at most, full-jitter backoff from 0.1 s capped at 1 s (the 429 carries ``Retry-After: 0``).
Printed per side (medians of the rounds): 429s answered, calls failed, the most calls the
provider had in flight, the batch's wall time, p50/p99 from send to result, and CPU per call
of the workers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from _support import (
    WORKER_READY_LINE,
    blueprint_worker_command,
    group_cpu_s,
    log_tail,
    percentile_ms,
    start_process,
    start_redis,
    stop_process,
    timed_run,
)

from dispatcher import Blueprint, JobCall, Settings
from providers.base import FaasConfig
from providers.custom import LIMITS, HttpFaasExecutor
from tests.switchable_function import SwitchableFunction, switchable_function

if TYPE_CHECKING:
    import subprocess

UNBUDGETED, BUDGETED = 0, 1
_SWITCH_URL_ENV = "BENCH_SWITCH_URL"
_CAPACITY_ENV = "BENCH_CAPACITY"
_CONFIG = FaasConfig(timeout_secs=10, memory_mb=128)
_RETRIES = {"retry_max": 5, "retry_base_s": 0.1, "retry_cap_s": 1.0}
_SIDES = {UNBUDGETED: "no budget", BUDGETED: "shared budget"}


def build_blueprint() -> Blueprint:
    url = os.environ.get(_SWITCH_URL_ENV, "http://127.0.0.1:1")
    capacity = int(os.environ.get(_CAPACITY_ENV, "4"))
    budgeted = LIMITS.model_copy(update={"max_account_concurrency": capacity})
    blueprint = Blueprint()
    for job_id, executor in (
        (UNBUDGETED, HttpFaasExecutor(f"{url}/unbudgeted")),
        (BUDGETED, HttpFaasExecutor(f"{url}/budgeted", limits=budgeted)),
    ):
        executor.configure_job(job_id, _CONFIG)
        blueprint.with_faas_executor(job_id, executor)
    return blueprint


#: ``--app budget:blueprint`` (a factory: the URL is read in the worker's process).
blueprint = build_blueprint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--capacity", type=int, default=4, help="C: the provider's limit")
    parser.add_argument("--workers", type=int, default=4, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=8, help="slots per worker")
    parser.add_argument("--job-ms", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pool", default="gevent", choices=["threads", "gevent"])
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="bench-budget-") as scratch,
        switchable_function() as function,
    ):
        root = Path(scratch)
        processes: list[subprocess.Popen[bytes]] = []
        os.environ.update({_SWITCH_URL_ENV: function.url, _CAPACITY_ENV: str(args.capacity)})
        try:
            redis_process, redis_url = start_redis(root)
            processes.append(redis_process)
            settings = Settings.from_redis_url(
                redis_url, metrics_port=0, max_in_flight=args.calls, **_RETRIES
            )
            env = {
                **settings.to_env(),
                _SWITCH_URL_ENV: function.url,
                _CAPACITY_ENV: str(args.capacity),
            }
            workers = []
            for index in range(args.workers):
                command = blueprint_worker_command(
                    "budget:blueprint",
                    pool=args.pool,
                    concurrency=args.concurrency,
                    loglevel="INFO",
                )
                workers.append(
                    start_process(
                        command,
                        root / f"worker-{index}.log",
                        env=env,
                        ready_line=WORKER_READY_LINE,
                        what=f"worker {index}",
                    )
                )
            processes.extend(workers)
            _compare(build_blueprint().with_settings(settings), function, workers, args)
        except BaseException:
            for index in range(args.workers):
                name = f"worker-{index}.log"
                print(f"--- {name} tail:\n{log_tail(root / name)}", file=sys.stderr)
            raise
        finally:
            for process in reversed(processes):
                stop_process(process)


def _compare(
    blueprint: Blueprint,
    function: SwitchableFunction,
    workers: list[subprocess.Popen[bytes]],
    args: argparse.Namespace,
) -> None:
    rows: dict[int, list[tuple[float, ...]]] = {side: [] for side in _SIDES}
    for side in _SIDES:  # warm-up: every worker's connections and imports
        function.reset()
        timed_run(blueprint, [JobCall(side) for _ in range(16)], max_in_flight=16)
    for round_index in range(args.rounds):
        for side, name in _SIDES.items():
            function.reset()
            function.delay_s, function.capacity = args.job_ms / 1000, args.capacity
            calls = [JobCall(side) for _ in range(args.calls)]
            cpu_before = sum(group_cpu_s(worker.pid) for worker in workers)
            timed, started = timed_run(blueprint, calls, max_in_flight=args.calls)
            wall_s = time.perf_counter() - started
            cpu_s = sum(group_cpu_s(worker.pid) for worker in workers) - cpu_before
            latencies = [entry.latency_s for entry in timed]
            row = (
                function.statuses[429],
                sum(1 for entry in timed if not entry.result.ok),
                function.peak_in_flight,
                wall_s,
                percentile_ms(latencies, 50),
                percentile_ms(latencies, 99),
                cpu_s / len(timed) * 1000,
            )
            rows[side].append(row)
            print(
                f"round {round_index + 1} {name:>13}: 429s {row[0]:5.0f}  failed {row[1]:4.0f}  "
                f"peak in flight {row[2]:3.0f}  wall {row[3]:5.2f} s  p50 {row[4]:6.0f} ms  "
                f"p99 {row[5]:6.0f} ms  CPU {row[6]:.1f} ms/call",
                flush=True,
            )
    print(
        f"\n{args.calls} calls of {args.job_ms} ms, {args.workers} workers x "
        f"{args.concurrency} slots, provider capacity {args.capacity}; medians"
    )
    print(
        f"{'':>13}  {'429s':>5}  {'failed':>6}  {'peak':>4}  {'wall s':>6}  {'p50 ms':>6}  "
        f"{'p99 ms':>6}  CPU ms/call"
    )
    for side, name in _SIDES.items():
        throttled, failed, peak, wall, p50, p99, cpu = (
            statistics.median(column) for column in zip(*rows[side], strict=True)
        )
        print(
            f"{name:>13}  {throttled:5.0f}  {failed:6.0f}  {peak:4.0f}  {wall:6.2f}  "
            f"{p50:6.0f}  {p99:6.0f}  {cpu:.1f}"
        )


if __name__ == "__main__":
    main()

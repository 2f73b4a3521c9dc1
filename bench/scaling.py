"""Horizontal scaling: FaaS-bound throughput with 1, 2 and 4 worker processes.

Question: when jobs are forwarded to a FaaS function (so a worker mostly waits on HTTP), does
adding worker processes (as separate hosts would be) on the same queues add throughput?

    .venv/bin/python bench/scaling.py [--workers 1,2,4] [--concurrency 8] [--calls 800]
        [--sleep-ms 50]

It starts its own redis-server and io_concurrency's sleeping function (``function_app`` under
uvicorn: it sleeps ``--sleep-ms``, then echoes the args), then for each worker count starts
that many ``blueprint-faas worker --pool threads --concurrency C`` processes serving
io_concurrency's app (its one job forwarded to that function), and pushes ``--calls`` calls
through the runner (with room in flight for every worker thread). It prints calls/s, the ratio
to 1 worker and the ceiling ``workers x C / sleep``. The baseline (1 worker) is measured in the
same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from _support import (
    WORKER_READY_LINE,
    blueprint_worker_command,
    log_tail,
    start_process,
    start_redis,
    stop_process,
)
from io_concurrency import FUNCTION_URL_ENV, SLEEPY_JOB, start_function

from dispatcher import BlueprintRunner, JobCall, JobResult, Settings

if TYPE_CHECKING:
    import subprocess


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4", help="worker process counts")
    parser.add_argument("--concurrency", type=int, default=8, help="threads per worker")
    parser.add_argument("--calls", type=int, default=800, help="calls per measurement")
    parser.add_argument("--sleep-ms", type=float, default=50.0, help="the function's run time")
    args = parser.parse_args()

    counts = [int(part) for part in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as scratch_dir:
        scratch = Path(scratch_dir)
        redis_process, redis_url = start_redis(scratch)
        processes: list[subprocess.Popen[bytes]] = [redis_process]
        try:
            function_url = start_function(scratch, args.sleep_ms, processes)
            env = {**Settings.from_redis_url(redis_url).to_env(), FUNCTION_URL_ENV: function_url}
            rates = {n: _measure(n, args, env, scratch, redis_url) for n in counts}
        except BaseException:
            print(f"--- function.log tail:\n{log_tail(scratch / 'function.log')}", file=sys.stderr)
            raise
        finally:
            for process in reversed(processes):
                stop_process(process)

    base = rates[counts[0]]
    print(f"\nFaaS-bound calls ({args.sleep_ms:g} ms each), threads pool, C={args.concurrency}")
    print(f"{'workers':>7} {'calls/s':>9} {'ratio':>6} {'ceiling':>8}")
    for n in counts:
        ceiling = n * args.concurrency / (args.sleep_ms / 1000)
        print(f"{n:>7} {rates[n]:>9.0f} {rates[n] / base:>6.2f} {ceiling:>8.0f}")


def _measure(
    workers: int, args: argparse.Namespace, env: dict[str, str], scratch: Path, redis_url: str
) -> float:
    """Calls per second with ``workers`` worker processes (after one warm-up round)."""
    processes = []
    try:
        for index in range(workers):
            command = blueprint_worker_command(
                "io_concurrency:blueprint",
                pool="threads",
                concurrency=args.concurrency,
                loglevel="INFO",
            )
            processes.append(
                start_process(
                    command,
                    scratch / f"worker-{workers}-{index}.log",
                    env=env,
                    ready_line=WORKER_READY_LINE,
                    what=f"worker {index + 1} of {workers}",
                )
            )
        settings = Settings.from_redis_url(redis_url)
        window = 2 * workers * args.concurrency
        _run(settings, window, window)  # warm-up: connections, imports, thread pools
        started = time.perf_counter()
        _run(settings, args.calls, window)
        rate = args.calls / (time.perf_counter() - started)
        print(f"{workers} worker(s): {rate:.0f} calls/s", flush=True)
        return rate
    finally:
        for process in processes:
            stop_process(process)


def _run(settings: Settings, calls: int, window: int) -> None:
    results: list[JobResult] = []
    payload = b"scale"
    summary = (
        BlueprintRunner.builder(settings)
        .producer([JobCall(SLEEPY_JOB, payload) for _ in range(calls)])
        .consumer(results.append)
        .max_in_flight(window)
        .run()
    )
    if summary.succeeded != calls or not all(r.ok and r.body == payload for r in results):
        raise RuntimeError(f"not every call succeeded: {summary}")


if __name__ == "__main__":
    main()

"""Benchmark local-first placement with FaaS overflow against local only, under a burst.

Question: a burst of calls of a ~50 ms job hits 2 local slots. How much sooner is the burst
done when the job is ``local_with_faas_overflow`` (the backlog past
``overflow_backlog_high`` goes to the reference server) than when it is ``local``, and what
share of it, at what cost, ran on FaaS? Target: overflow at least halves the burst's p99
completion time.

    .venv/bin/python bench/overflow.py [--calls 200] [--rounds 3] [--job-ms 50]
        [--local-slots 2] [--faas-slots 64] [--faas-pool gevent] [--high 8] [--low 2]

One redis-server, one reference server with the job deployed as a shell bootstrap that
sleeps ``--job-ms`` (cheap to start, so the server is not the bottleneck), one local worker
(prefork, ``--local-slots``) serving the local side of both jobs, and one forwarding worker
(``--faas-pool``, ``--faas-slots``) serving the overflow lane. Job 0 is ``local``, job 1 the same
handler ``local_with_faas_overflow``; the rounds alternate the two. Each call is timed from
the burst's start (every call is yielded at once) to its result; printed per side: median of
the rounds' p50 and p99 completion times, the share run on FaaS, the estimated FaaS cost of
the burst at Lambda's x86 list price for the function's 128 MB (the custom platform has no
price of its own), and CPU per call of every process started.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import redis
from _support import (
    blueprint_worker_command,
    free_port,
    group_cpu_s,
    log_tail,
    percentile_ms,
    start_process,
    start_redis,
    stop_process,
    timed_run,
)

from dispatcher import Blueprint, JobCall, Router, Settings
from dispatcher.keys import CONSUMERS_KEY
from dispatcher.placement import Placement
from providers.base import FaasConfig
from providers.custom import HttpFaasExecutor
from providers.packaging import build_shell_package
from providers.pricing import estimate_invocation_cost

if TYPE_CHECKING:
    import subprocess

LOCAL_ONLY, OVERFLOW = 0, 1
_FAAS_URL_ENV = "BENCH_FAAS_URL"
_JOB_MS_ENV = "BENCH_JOB_MS"
_MEMORY_MB = 128


def _nap(args: bytes) -> bytes:
    time.sleep(int(os.environ.get(_JOB_MS_ENV, "50")) / 1000)
    return args


def build_blueprint() -> Blueprint:
    """Both jobs run the same local handler; job 1 may overflow to the reference server."""
    router = Router()
    router.add(LOCAL_ONLY, _nap)
    router.add(OVERFLOW, _nap)
    executor = HttpFaasExecutor(os.environ.get(_FAAS_URL_ENV, "http://127.0.0.1:1"))
    executor.configure_job(OVERFLOW, _config(32))
    blueprint = Blueprint(router=router, placements={OVERFLOW: Placement.LOCAL_WITH_FAAS_OVERFLOW})
    return blueprint.with_faas_executor(OVERFLOW, executor)


#: ``--app overflow:blueprint`` (a factory: the URL is read in the worker's process).
blueprint = build_blueprint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per burst")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--job-ms", type=int, default=50)
    parser.add_argument("--local-slots", type=int, default=2)
    parser.add_argument("--faas-slots", type=int, default=64)
    parser.add_argument("--faas-pool", default="gevent", choices=["threads", "gevent"])
    parser.add_argument("--high", type=int, default=8, help="overflow_backlog_high")
    parser.add_argument("--low", type=int, default=2, help="overflow_backlog_low")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-overflow-") as scratch:
        root = Path(scratch)
        processes: list[subprocess.Popen[bytes]] = []
        try:
            redis_process, redis_url = start_redis(root)
            processes.append(redis_process)
            faas_url = _start_reference_server(root, processes)
            _deploy(faas_url, args)
            settings = Settings.from_redis_url(
                redis_url,
                metrics_port=0,
                max_in_flight=args.calls,
                overflow_backlog_high=args.high,
                overflow_backlog_low=args.low,
            )
            env = {**settings.to_env(), _FAAS_URL_ENV: faas_url, _JOB_MS_ENV: str(args.job_ms)}
            os.environ.update({_FAAS_URL_ENV: faas_url, _JOB_MS_ENV: str(args.job_ms)})
            sides = (
                ("local", "prefork", args.local_slots),
                ("faas", args.faas_pool, args.faas_slots),
            )
            for started, (lane, pool, slots) in enumerate(sides, start=1):
                # WARNING: a log line per call would cost the FaaS side's CPU on two cores.
                command = blueprint_worker_command(
                    "overflow:blueprint", pool=pool, concurrency=slots, loglevel="WARNING"
                )
                processes.append(
                    start_process(
                        [*command, "--lane", lane],
                        root / f"worker-{lane}.log",
                        env=env,
                        ready=functools.partial(_consuming, redis_url, started),
                        what=f"the {lane} worker",
                    )
                )
            _compare(build_blueprint().with_settings(settings), processes, args)
        except BaseException:
            for name in ("server.log", "worker-local.log", "worker-faas.log"):
                print(f"--- {name} tail:\n{log_tail(root / name)}", file=sys.stderr)
            raise
        finally:
            for process in reversed(processes):
                stop_process(process)


def _consuming(redis_url: str, workers: int) -> bool:
    # Each worker's consuming channel registers itself once it consumes its queues.
    return int(redis.Redis.from_url(redis_url).scard(CONSUMERS_KEY)) >= workers


def _config(max_concurrency: int) -> FaasConfig:
    return FaasConfig(timeout_secs=30, memory_mb=_MEMORY_MB, max_concurrency=max_concurrency)


def _start_reference_server(root: Path, processes: list[subprocess.Popen[bytes]]) -> str:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "providers.reference_server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--data-dir", str(root / "faas"), "--log-level", "warning"]

    def answers() -> bool:
        try:
            httpx.get(f"{url}/api/functions/readiness-probe", timeout=1)
        except httpx.TransportError:
            return False
        return True

    processes.append(start_process(command, root / "server.log", ready=answers, what="server"))
    return url


def _deploy(faas_url: str, args: argparse.Namespace) -> None:
    script = (
        f'cat > /dev/null\nsleep {args.job_ms / 1000}\necho \'{{"result": [], "success": true}}\'\n'
    )
    with HttpFaasExecutor(faas_url) as executor:
        executor.deploy_job(OVERFLOW, build_shell_package(script), _config(args.faas_slots))


def _compare(
    blueprint: Blueprint, processes: list[subprocess.Popen[bytes]], args: argparse.Namespace
) -> None:
    figures: dict[int, list[tuple[float, float, float, float, float]]] = {
        LOCAL_ONLY: [],
        OVERFLOW: [],
    }
    for job_id in (LOCAL_ONLY, OVERFLOW):  # warm-up: imports, connections, first forks
        timed_run(blueprint, [JobCall(job_id) for _ in range(4)], max_in_flight=4)
    for round_index in range(args.rounds):
        for job_id in (LOCAL_ONLY, OVERFLOW):
            calls = [JobCall(job_id) for _ in range(args.calls)]
            cpu_before = sum(group_cpu_s(process.pid) for process in processes)
            timed, started = timed_run(blueprint, calls, max_in_flight=args.calls)
            cpu_s = sum(group_cpu_s(process.pid) for process in processes) - cpu_before
            done_s = [entry.done_at - started for entry in timed]
            failed = [entry.result for entry in timed if not entry.result.ok]
            if failed:
                raise RuntimeError(f"{len(failed)} calls failed, e.g. {failed[0].error}")
            on_faas = [entry.result for entry in timed if entry.result.ran_on != "local"]
            cost_usd = sum(
                estimate_invocation_cost("aws", result.metrics, memory_mb=_MEMORY_MB).total_usd
                for result in on_faas
                if result.metrics is not None
            )
            row = (
                percentile_ms(done_s, 50),
                percentile_ms(done_s, 99),
                len(on_faas) / len(timed),
                cost_usd,
                cpu_s / len(timed) * 1000,
            )
            figures[job_id].append(row)
            print(
                f"round {round_index + 1} {_NAMES[job_id]:>13}: p50 {row[0]:7.0f} ms  "
                f"p99 {row[1]:7.0f} ms  on FaaS {row[2]:5.1%}  cost ${row[3]:.7f}  "
                f"CPU {row[4]:.1f} ms/call",
                flush=True,
            )
    print(f"\n{args.calls} calls of {args.job_ms} ms, {args.local_slots} local slots; medians")
    print(f"{'':>13}  {'p50 ms':>8}  {'p99 ms':>8}  {'on FaaS':>8}  {'cost $':>10}  CPU ms/call")
    for job_id in (LOCAL_ONLY, OVERFLOW):
        p50, p99, share, cost, cpu = (
            statistics.median(c) for c in zip(*figures[job_id], strict=True)
        )
        print(
            f"{_NAMES[job_id]:>13}  {p50:8.0f}  {p99:8.0f}  {share:8.1%}  {cost:10.7f}  {cpu:.1f}"
        )
    p99_local = statistics.median(row[1] for row in figures[LOCAL_ONLY])
    p99_overflow = statistics.median(row[1] for row in figures[OVERFLOW])
    print(f"p99 overflow / local only: {p99_overflow / p99_local:.2f} (target: at most 0.50)")


_NAMES = {LOCAL_ONLY: "local only", OVERFLOW: "with overflow"}


if __name__ == "__main__":
    main()

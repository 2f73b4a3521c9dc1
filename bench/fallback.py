"""Benchmark a provider outage: retried into it, failing fast behind the breaker, or served locally.

Question: the provider fails (502) for a window in the middle of a steady stream of calls.
How many calls fail, how slow is the p99, and how many requests hit the failing provider
when the job is ``faas`` with no breaker (calls retried into the outage), ``faas`` behind the
shared circuit breaker (fails fast with ``circuit_open``), and ``faas_with_local_fallback``
(served by the local handler while the breaker is open)? Target: with fallback no call fails.

    .venv/bin/python bench/fallback.py [--seconds 10] [--outage 3:6] [--rate 20] [--rounds 2]
        [--job-ms 20] [--pool gevent] [--concurrency 64]

The provider is the switchable function server of the tests
(:mod:`tests.switchable_function`) in this process. Two workers: one whose breaker can
never open (``breaker_failures`` and ``breaker_min_calls`` out of reach) serves job 0, the
"no breaker" side, on its own URL path (its own scope); one with the breaker
(``breaker_failures`` 5, cool-down 1 s) serves job 2 (``faas``) and job 1
(``faas_with_local_fallback``, whose local handler sleeps as long as the function). Retries:
5 at most, full-jitter backoff from 0.25 s capped at 2 s. The sides run one after another
(the outage is a moment in time), each round in the same order, with the breaker reset
between sides. Printed per side: calls failed (all, and sent during the outage), p50 and p99
from send to result, requests the failing provider received, and the share served locally.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from _support import (
    blueprint_worker_command,
    log_tail,
    percentile_ms,
    start_process,
    start_redis,
    stop_process,
    timed_run,
)

from dispatcher import Blueprint, JobCall, Router, Settings
from dispatcher.keys import BREAKER_KEY_PREFIX
from dispatcher.placement import Placement
from providers.base import FaasConfig
from providers.custom import HttpFaasExecutor
from tests.switchable_function import SwitchableFunction, switchable_function

if TYPE_CHECKING:
    import subprocess

NO_BREAKER, FALLBACK, BREAKER = 0, 1, 2
_SWITCH_URL_ENV = "BENCH_SWITCH_URL"
_JOB_MS_ENV = "BENCH_JOB_MS"
_CONFIG = FaasConfig(timeout_secs=10, memory_mb=128)
_RETRIES = {"retry_max": 5, "retry_base_s": 0.25, "retry_cap_s": 2.0}
_NEVER_OPENS = {"breaker_failures": 10**9, "breaker_min_calls": 10**9}
_OPENS = {"breaker_failures": 5, "breaker_cooldown_s": 1.0}
_SIDES = {NO_BREAKER: "faas, no breaker", BREAKER: "faas + breaker", FALLBACK: "with fallback"}


def _nap(args: bytes) -> bytes:
    time.sleep(int(os.environ.get(_JOB_MS_ENV, "20")) / 1000)
    return args


def build_blueprint() -> Blueprint:
    url = os.environ.get(_SWITCH_URL_ENV, "http://127.0.0.1:1")
    router = Router()
    router.add(FALLBACK, _nap)
    blueprint = Blueprint(router=router, placements={FALLBACK: Placement.FAAS_WITH_LOCAL_FALLBACK})
    guarded = HttpFaasExecutor(url)
    for job_id, executor in (
        (NO_BREAKER, HttpFaasExecutor(f"{url}/no-breaker")),
        (FALLBACK, guarded),
        (BREAKER, guarded),
    ):
        executor.configure_job(job_id, _CONFIG)
        blueprint.with_faas_executor(job_id, executor)
    return blueprint


#: ``--app fallback:blueprint`` (a factory: the URL is read in the worker's process).
blueprint = build_blueprint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument("--outage", default="3:6", help="start:end of the outage, in seconds")
    parser.add_argument("--rate", type=float, default=20.0, help="calls per second")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--job-ms", type=int, default=20)
    parser.add_argument("--pool", default="gevent", choices=["threads", "gevent"])
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    outage = tuple(float(part) for part in args.outage.split(":"))

    with (
        tempfile.TemporaryDirectory(prefix="bench-fallback-") as scratch,
        switchable_function() as function,
    ):
        root = Path(scratch)
        processes: list[subprocess.Popen[bytes]] = []
        function.delay_s = args.job_ms / 1000
        os.environ.update({_SWITCH_URL_ENV: function.url, _JOB_MS_ENV: str(args.job_ms)})
        try:
            redis_process, redis_url = start_redis(root)
            processes.append(redis_process)
            base = {"metrics_port": 0, "max_in_flight": 10_000, **_RETRIES}
            for name, jobs, knobs in (
                ("no-breaker", str(NO_BREAKER), _NEVER_OPENS),
                ("breaker", f"{FALLBACK},{BREAKER}", _OPENS),
            ):
                worker_settings = Settings.from_redis_url(redis_url, **base, **knobs)
                command = blueprint_worker_command(
                    "fallback:blueprint",
                    pool=args.pool,
                    concurrency=args.concurrency,
                    loglevel="INFO",
                    jobs=jobs,
                )
                env = {**worker_settings.to_env(), _SWITCH_URL_ENV: function.url}
                env[_JOB_MS_ENV] = str(args.job_ms)
                processes.append(
                    start_process(
                        command,
                        root / f"worker-{name}.log",
                        env=env,
                        ready_line=" ready.",
                        what=f"the {name} worker",
                    )
                )
            settings = Settings.from_redis_url(redis_url, **base, **_OPENS)
            _compare(build_blueprint().with_settings(settings), function, redis_url, outage, args)
        except BaseException:
            for name in ("worker-no-breaker.log", "worker-breaker.log"):
                print(f"--- {name} tail:\n{log_tail(root / name)}", file=sys.stderr)
            raise
        finally:
            for process in reversed(processes):
                stop_process(process)


def _compare(
    blueprint: Blueprint,
    function: SwitchableFunction,
    redis_url: str,
    outage: tuple[float, ...],
    args: argparse.Namespace,
) -> None:
    broker = redis.Redis.from_url(redis_url)
    count = int(args.seconds * args.rate)
    rows: dict[int, list[tuple[float, float, float, float, float, float]]] = {
        side: [] for side in _SIDES
    }
    for side in _SIDES:  # warm-up
        timed_run(blueprint, [JobCall(side) for _ in range(8)], max_in_flight=8)
    for round_index in range(args.rounds):
        for side in _SIDES:
            for key in broker.scan_iter(f"{BREAKER_KEY_PREFIX}*"):
                broker.delete(key)
            function.reset()
            function.delay_s = args.job_ms / 1000
            switch = threading.Thread(target=_outage, args=(function, outage), daemon=True)
            switch.start()
            calls = [JobCall(side) for _ in range(count)]
            timed, started = timed_run(blueprint, calls, max_in_flight=count, gap_s=1 / args.rate)
            switch.join()
            failed = [entry for entry in timed if not entry.result.ok]
            in_outage = [
                entry for entry in failed if outage[0] <= entry.sent_at - started < outage[1]
            ]
            latencies = [entry.latency_s for entry in timed]
            local = sum(1 for entry in timed if entry.result.ran_on == "local")
            row = (
                len(failed),
                len(in_outage),
                percentile_ms(latencies, 50),
                percentile_ms(latencies, 99),
                function.statuses[502],
                local / len(timed),
            )
            rows[side].append(row)
            print(
                f"round {round_index + 1} {_SIDES[side]:>16}: failed {row[0]:4.0f} "
                f"(in the outage {row[1]:4.0f})  p50 {row[2]:6.0f} ms  p99 {row[3]:6.0f} ms  "
                f"requests to the failing provider {row[4]:5.0f}  local {row[5]:5.1%}",
                flush=True,
            )
    print(
        f"\n{count} calls at {args.rate}/s, outage {outage[0]}-{outage[1]} s; medians of "
        f"{args.rounds} round(s)"
    )
    print(f"{'':>16}  {'failed':>6}  {'p50 ms':>7}  {'p99 ms':>7}  {'to failing':>10}  local")
    for side, name in _SIDES.items():
        failed_n, _, p50, p99, sent, local = (
            statistics.median(c) for c in zip(*rows[side], strict=True)
        )
        print(f"{name:>16}  {failed_n:6.0f}  {p50:7.0f}  {p99:7.0f}  {sent:10.0f}  {local:.1%}")


def _outage(function: SwitchableFunction, window: tuple[float, ...]) -> None:
    started = time.perf_counter()
    time.sleep(window[0])
    function.failing = True
    time.sleep(max(0.0, window[1] - (time.perf_counter() - started)))
    function.failing = False


if __name__ == "__main__":
    main()

"""Benchmark what the dispatcher costs on top of raw Celery, for no-op local jobs.

Question: how many no-op calls per second go end to end through our runner, Redis, our
worker (execute task: decode, idempotency check, router, result) and the result backend,
compared with raw Celery (``send_task`` of a no-op task and its results) on the same Redis?

    .venv/bin/python bench/dispatch_overhead.py [--calls 2000] [--pool threads]
        [--concurrency 8] [--in-flight 0] [--rounds 3] [--loglevel INFO] [--raw-profile same]

Fairness: both sides run on one redis-server started by the benchmark, with a worker started
the same way (same pool, concurrency and log level, ``--without-mingle --without-gossip``),
the same serializer (JSON) and a payload of the same size. ``--raw-profile same`` (default)
gives raw Celery our reliability profile (late ack, prefetch 1, same transport options): what
remains is the dispatcher's own cost. ``--raw-profile stock`` leaves raw Celery on its
defaults (early ack, prefetch 4). With ``--in-flight 0`` (default) neither side bounds the
calls in flight: the runner's ``max_in_flight`` is the call count and raw Celery sends every
task, then waits with ``ResultSet.join_native`` (pub/sub, the idiomatic fast way). With
``--in-flight K`` both keep a sliding window of K calls: the runner by its ``max_in_flight``,
raw Celery by sending a new task from the ``AsyncResult.then`` callback of a finished one.
Rounds alternate between the two sides; medians and their ratio are printed.
"""

from __future__ import annotations

import argparse
import base64
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
    raw_celery_app,
    raw_window,
    start_process,
    start_raw_worker,
    start_redis,
    stop_process,
)

from dispatcher import Blueprint, BlueprintRunner, JobCall, JobResult, Router, Settings

if TYPE_CHECKING:
    import subprocess

    from celery import Celery

NOOP_JOB = 0
RAW_TASK = "bench.noop"
RAW_QUEUE = "bench.raw"
_RAW_URL_ENV = "BENCH_RAW_REDIS_URL"
_RAW_PROFILE_ENV = "BENCH_RAW_PROFILE"
_JOIN_TIMEOUT_S = 600.0

router = Router()


@router.job(NOOP_JOB)
def noop(args: bytes) -> bytes:
    return args


#: The app our worker serves (``--app dispatch_overhead:blueprint``); settings from its env.
blueprint = Blueprint(router=router)


def make_raw_app(redis_url: str, profile: str) -> Celery:
    """A plain Celery app with one no-op task on one queue, on ``redis_url``."""
    app = raw_celery_app(redis_url, "bench-raw", queue=RAW_QUEUE, profile=profile)

    @app.task(name=RAW_TASK)
    def raw_noop(args: str) -> str:
        return args

    return app


#: The app the raw Celery worker serves (``-A dispatch_overhead:raw_app``).
raw_app = make_raw_app(
    os.environ.get(_RAW_URL_ENV, "redis://127.0.0.1:6379/0"),
    os.environ.get(_RAW_PROFILE_ENV, "same"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per round and side")
    parser.add_argument("--pool", default="threads", choices=["threads", "gevent", "prefork"])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--in-flight", type=int, default=0, help="sliding window on both sides; 0 = unbounded"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loglevel", default="INFO", help="both workers' log level")
    parser.add_argument("--raw-profile", choices=["same", "stock"], default="same")
    parser.add_argument("--payload-bytes", type=int, default=8)
    parser.add_argument(
        "--batch-max-calls", type=int, default=Settings().batch_max_calls, help="ours' batches"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as scratch:
        root = Path(scratch)
        processes: list[subprocess.Popen[bytes]] = []
        try:
            redis_process, url = start_redis(root)
            processes.append(redis_process)
            # No metrics exporter: its fixed port would clash with other workers on the host.
            settings = Settings.from_redis_url(
                url, metrics_port=0, batch_max_calls=args.batch_max_calls
            )
            ours = _start_ours(root, settings, args)
            processes.append(ours)
            raw = _start_raw(root, url, args)
            processes.append(raw)
            _compare(settings, make_raw_app(url, args.raw_profile), (ours.pid, raw.pid), args)
        except BaseException:
            for name in ("ours.log", "raw.log"):
                print(f"--- {name} tail:\n{log_tail(root / name)}", file=sys.stderr)
            raise
        finally:
            for process in reversed(processes):
                stop_process(process)


def _start_ours(
    root: Path, settings: Settings, args: argparse.Namespace
) -> subprocess.Popen[bytes]:
    command = blueprint_worker_command(
        "dispatch_overhead:blueprint",
        pool=args.pool,
        concurrency=args.concurrency,
        loglevel=args.loglevel,
    )
    return start_process(
        command,
        root / "ours.log",
        env=settings.to_env(),
        ready_line=WORKER_READY_LINE,
        what="our worker",
    )


def _start_raw(root: Path, url: str, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    return start_raw_worker(
        "dispatch_overhead:raw_app",
        root / "raw.log",
        pool=args.pool,
        concurrency=args.concurrency,
        loglevel=args.loglevel,
        queue=RAW_QUEUE,
        env={_RAW_URL_ENV: url, _RAW_PROFILE_ENV: args.raw_profile},
    )


def _compare(
    settings: Settings, app: Celery, worker_pids: tuple[int, int], args: argparse.Namespace
) -> None:
    payload = bytes(range(args.payload_bytes % 256)) * (args.payload_bytes // 256 + 1)
    payload = payload[: args.payload_bytes]
    window = args.in_flight or args.calls
    bound = "unbounded" if not args.in_flight else str(args.in_flight)
    print(
        f"{args.calls} no-op calls per round; pool={args.pool} concurrency={args.concurrency} "
        f"in-flight={bound} loglevel={args.loglevel} raw profile={args.raw_profile}"
    )
    # Warm-up: connections, worker threads, imports on both sides.
    _ours(settings, min(200, args.calls), window, payload)
    _raw(app, min(200, args.calls), window if args.in_flight else 0, payload)

    # CPU per call (client process, worker process group) is printed beside the rates: on a
    # shared machine it moves far less than wall-clock throughput does. "unbatched" is our
    # runner with batch_max_calls 1, today's wire, against the same worker.
    unbatched = settings.model_copy(update={"batch_max_calls": 1})
    header = (
        f"{'round':<8}{'ours calls/s':>14}{'calls/msg':>10}{'unbatched/s':>13}"
        f"{'raw calls/s':>13}{'ours/raw':>9}{'unb./raw':>9}"
    )
    print(f"{header}   CPU us/call (client+worker) ours vs unbatched vs raw")
    rates: dict[str, list[float]] = {"ours": [], "unbatched": [], "raw": []}
    cpus: dict[str, list[tuple[float, float]]] = {name: [] for name in rates}
    per_message: list[float] = []

    def ours_side(run_settings: Settings) -> float:
        elapsed_s, calls_per_message = _ours(run_settings, args.calls, window, payload)
        if run_settings is settings:
            per_message.append(calls_per_message)
        return elapsed_s

    sides = {
        "ours": (lambda: ours_side(settings), worker_pids[0]),
        "unbatched": (lambda: ours_side(unbatched), worker_pids[0]),
        "raw": (lambda: _raw(app, args.calls, args.in_flight, payload), worker_pids[1]),
    }
    for round_no in range(1, args.rounds + 1):
        for name, (run, pid) in sides.items():
            client_cpu_s, worker_cpu_s = time.process_time(), group_cpu_s(pid)
            rates[name].append(args.calls / run())
            client_cpu_s = time.process_time() - client_cpu_s
            worker_cpu_s = group_cpu_s(pid) - worker_cpu_s
            cpus[name].append((client_cpu_s * 1e6 / args.calls, worker_cpu_s * 1e6 / args.calls))
        print(
            _row(
                str(round_no),
                {name: values[-1] for name, values in rates.items()},
                per_message[-1],
                _cpu(cpus, -1),
            )
        )
    medians = {name: statistics.median(values) for name, values in rates.items()}
    print(_row("median", medians, statistics.median(per_message), _cpu(cpus, None)))
    print("target: ours/raw >= 2.0")


def _row(label: str, rate: dict[str, float], per_message: float, cpu: str) -> str:
    return (
        f"{label:<8}{rate['ours']:>14.0f}{per_message:>10.1f}{rate['unbatched']:>13.0f}"
        f"{rate['raw']:>13.0f}{rate['ours'] / rate['raw']:>9.2f}"
        f"{rate['unbatched'] / rate['raw']:>9.2f}   {cpu}"
    )


def _cpu(cpus: dict[str, list[tuple[float, float]]], index: int | None) -> str:
    def pick(name: str, part: int) -> float:
        values = [sample[part] for sample in cpus[name]]
        return values[index] if index is not None else statistics.median(values)

    return " vs ".join(f"{pick(name, 0):.0f}+{pick(name, 1):.0f}" for name in cpus)


def _ours(settings: Settings, calls: int, window: int, payload: bytes) -> tuple[float, float]:
    """Seconds for ``calls`` no-op calls through the runner, and calls per message.

    Every result is checked.
    """
    results: list[JobResult] = []
    producer = [JobCall(NOOP_JOB, payload) for _ in range(calls)]
    started = time.perf_counter()
    summary = (
        BlueprintRunner.builder(settings)
        .router(router)
        .producer(producer)
        .consumer(results.append)
        .max_in_flight(window)
        .run()
    )
    elapsed_s = time.perf_counter() - started
    if summary.succeeded != calls or not all(r.ok and r.body == payload for r in results):
        raise RuntimeError(f"ours: {summary}")
    return elapsed_s, calls / max(1, summary.messages)


def _raw(app: Celery, calls: int, window: int, payload: bytes) -> float:
    """Seconds for ``calls`` raw no-op tasks and their results (``window`` 0: unbounded)."""
    from celery.result import ResultSet

    arg = base64.b64encode(payload).decode("ascii")
    started = time.perf_counter()
    if not window:
        sent = [app.send_task(RAW_TASK, args=(arg,), queue=RAW_QUEUE) for _ in range(calls)]
        values = ResultSet(sent, app=app).join_native(timeout=_JOIN_TIMEOUT_S)
    else:
        values = raw_window(
            app,
            RAW_TASK,
            (arg,),
            queue=RAW_QUEUE,
            calls=calls,
            window=window,
            timeout_s=_JOIN_TIMEOUT_S,
        )
    elapsed_s = time.perf_counter() - started
    if len(values) != calls or any(value != arg for value in values):
        raise RuntimeError("raw: missing or wrong results")
    return elapsed_s


if __name__ == "__main__":
    main()

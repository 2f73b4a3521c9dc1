"""Horizontal scaling: FaaS-bound throughput with 1, 2 and 4 worker processes.

Question: when jobs are forwarded to a FaaS function (so a worker mostly waits on HTTP), does
adding worker processes (as separate hosts would be) on the same queues add throughput?

    .venv/bin/python bench/scaling.py [--workers 1,2,4] [--concurrency 8] [--calls 800]
        [--sleep-ms 50] [--loglevel WARNING]

It starts its own redis-server and a tiny asyncio HTTP function implementing the Custom FaaS
contract's invoke endpoint (it sleeps ``--sleep-ms``, then echoes the args), then for each
worker count starts that many ``blueprint-faas worker --pool threads --concurrency C``
processes serving job 1 of ``_scaling_app``, and pushes ``--calls`` calls through the runner
(with room in flight for every worker thread). It prints calls/s, the ratio to 1 worker and
the ceiling ``workers x C / sleep``. The baseline (1 worker) is measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from _support import (
    WORKER_READY_LINE,
    blueprint_worker_command,
    free_port,
    start_process,
    start_redis,
    stop_process,
)

from dispatcher import BlueprintRunner, JobCall, JobResult, Settings

SCALING_APP = "_scaling_app"
FUNCTION_URL_ENV = "BENCH_FUNCTION_URL"
JOB_ID = 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4", help="worker process counts")
    parser.add_argument("--concurrency", type=int, default=8, help="threads per worker")
    parser.add_argument("--calls", type=int, default=800, help="calls per measurement")
    parser.add_argument("--sleep-ms", type=float, default=50.0, help="the function's run time")
    parser.add_argument("--loglevel", default="WARNING")
    parser.add_argument("--serve-function", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_function is not None:
        asyncio.run(_serve_function(args.serve_function, args.sleep_ms / 1000))
        return

    counts = [int(part) for part in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as scratch_dir:
        scratch = Path(scratch_dir)
        redis_process, redis_url = start_redis(scratch)
        function_process = None
        try:
            port = free_port()
            serve = ["--serve-function", str(port), "--sleep-ms", str(args.sleep_ms)]
            function_process = start_process(
                [sys.executable, __file__, *serve],
                scratch / "function.log",
                ready_line="serving",
                what="the sleeping function",
            )
            env = {
                **Settings.from_redis_url(redis_url).to_env(),
                FUNCTION_URL_ENV: f"http://127.0.0.1:{port}",
            }
            rates = {n: _measure(n, args, env, scratch, redis_url) for n in counts}
        finally:
            stop_process(function_process)
            stop_process(redis_process)

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
                SCALING_APP, pool="threads", concurrency=args.concurrency, loglevel="INFO"
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
    from _scaling_app import app

    results: list[JobResult] = []
    payload = b"scale"
    summary = (
        BlueprintRunner.builder(settings)
        .registry(app.registry)
        .producer([JobCall(JOB_ID, payload) for _ in range(calls)])
        .consumer(results.append)
        .max_in_flight(window)
        .run()
    )
    if summary.succeeded != calls or not all(r.ok and r.body == payload for r in results):
        raise RuntimeError(f"not every call succeeded: {summary}")


async def _serve_function(port: int, sleep_s: float) -> None:
    """The Custom contract's invoke endpoint, HTTP/1.1 keep-alive, on asyncio alone."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                request = json.loads(await reader.readexactly(length))
                await asyncio.sleep(sleep_s)
                body = json.dumps(
                    {"job_id": request["job_id"], "result": request["args"], "success": True}
                ).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print("serving", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    main()

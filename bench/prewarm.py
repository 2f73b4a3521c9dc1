"""Benchmark pre-warming: the first call after an idle period, with and without beat's warm.

Question: how often is the first invocation after an idle period a cold start, and how slow is
it, when nothing keeps the function warm (the baseline) and when beat's warm task keeps it
warm?

The reference server runs with a short ``--warm-idle-ttl-s`` so that warm instances expire
during each idle period, as they do on a real platform. Each round waits ``--idle-s`` (longer
than the TTL) and then makes one invocation. In the pre-warmed run, a scheduler thread makes
the call beat's warm task makes (``executor.warm(job_id, instances)``) every ``--warm-every-s``
(shorter than the TTL), as beat would with ``warm_interval_s`` set below the platform's idle
TTL.

    .venv/bin/python bench/prewarm.py [--rounds 20] [--ttl-s 1.0] [--idle-s 1.5] \
        [--warm-every-s 0.5] [--instances 1]

Prints, for both runs, the cold-start share and the p50/p90 latency of those invocations.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from _support import free_port, start_process, stop_process

from providers.base import FaasConfig
from providers.custom import HttpFaasExecutor
from providers.packaging import build_custom_package

_REPO_ROOT = Path(__file__).resolve().parents[1]
_JOB_ID = 1
_CONFIG = FaasConfig(memory_mb=128, timeout_secs=30, keep_warm=True)


def _answers(executor: HttpFaasExecutor) -> bool:
    try:
        executor.health_check(_JOB_ID)
    except Exception:
        return False
    return True


def _run(
    executor: HttpFaasExecutor,
    rounds: int,
    idle_s: float,
    warm_every_s: float | None,
    instances: int,
) -> tuple[list[float], list[bool]]:
    """``rounds`` invocations, each after ``idle_s`` idle; warming on a schedule if asked."""
    stop = threading.Event()
    warmer = None
    if warm_every_s is not None:

        def warm_on_schedule() -> None:
            while not stop.is_set():
                executor.warm(_JOB_ID, instances)  # what the warm task does
                stop.wait(warm_every_s)

        warmer = threading.Thread(target=warm_on_schedule, daemon=True)
        warmer.start()
    latencies_ms, colds = [], []
    try:
        for number in range(rounds):
            time.sleep(idle_s)  # the idle period under test, not a readiness wait
            response = executor.invoke_with_metrics(_JOB_ID, number.to_bytes(8, "big"))
            latencies_ms.append(response.metrics.total_ms)
            colds.append(bool(response.metrics.cold_start))
    finally:
        stop.set()
        if warmer is not None:
            warmer.join()
    return latencies_ms, colds


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--ttl-s", type=float, default=1.0, help="server's warm idle TTL")
    parser.add_argument("--idle-s", type=float, default=1.5, help="idle time before each call")
    parser.add_argument("--warm-every-s", type=float, default=0.5, help="warm task period")
    parser.add_argument("--instances", type=int, default=1)
    args = parser.parse_args()
    if args.idle_s <= args.ttl_s or args.warm_every_s >= args.ttl_s:
        parser.error("need --warm-every-s < --ttl-s < --idle-s")

    with tempfile.TemporaryDirectory(prefix="bench-prewarm-") as tmp:
        port = free_port()
        command = [sys.executable, "-m", "providers.reference_server", "--port", str(port)]
        command += ["--data-dir", f"{tmp}/data", "--warm-idle-ttl-s", str(args.ttl_s)]
        with HttpFaasExecutor(f"http://127.0.0.1:{port}") as executor:
            server = start_process(
                command, Path(tmp) / "server.log", ready=lambda: _answers(executor), what="server"
            )
            try:
                package = build_custom_package(
                    "_squaring:square",
                    sources=[_REPO_ROOT / "dispatcher" / "_squaring.py"],
                    python=sys.executable,
                )
                executor.deploy_job(_JOB_ID, package, _CONFIG)
                runs = {
                    "no pre-warm": _run(executor, args.rounds, args.idle_s, None, 1),
                    "beat warm": _run(
                        executor, args.rounds, args.idle_s, args.warm_every_s, args.instances
                    ),
                }
            finally:
                stop_process(server)

    print(
        f"{args.rounds} calls, each after {args.idle_s} s idle; server warm TTL {args.ttl_s} s; "
        f"warm every {args.warm_every_s} s"
    )
    print(f"{'run':<12} {'cold share':>10} {'p50 ms':>8} {'p90 ms':>8}")
    p50s = {}
    for name, (latencies, colds) in runs.items():
        p50s[name] = _p(latencies, 50)
        share = sum(colds) / len(colds)
        print(f"{name:<12} {share:>10.0%} {p50s[name]:>8.1f} {_p(latencies, 90):>8.1f}")
    print(f"p50 beat warm / no pre-warm: {p50s['beat warm'] / p50s['no pre-warm']:.2f}")


if __name__ == "__main__":
    main()

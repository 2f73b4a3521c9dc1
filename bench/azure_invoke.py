"""Benchmark what the azure executor adds to a bare keyed POST to the same function.

Question: for one call at a time, how much latency and client CPU does
``AzureFunctionExecutor.invoke`` add (limits check, request encoding, the key from its cache,
reply validation, error mapping) on top of an httpx POST with ``x-functions-key``?

    .venv/bin/python bench/azure_invoke.py [--calls 2000] [--payload-bytes 64] [--rounds 5]

The script starts the tests' local fake of ARM and Kudu (``tests/providers/_azure_fake.py``)
and deploys one job through the executor, so the function runs in a real local Functions host
stand-in (``tests/providers/_azure_host.py``: the generated ``function_app.py`` called through
azure-functions' ``HttpRequest``/``HttpResponse``). Calls alternate, one by one, between the
executor and a bare ``httpx.Client.post`` with the key to the same URL, over one warm
connection each. Printed per round and as the median of rounds: p50 and p99 of each side,
the p50 difference (target: at most 1 ms) and the client CPU per call of each side.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from _support import REPO_ROOT, percentile_ms

sys.path.insert(0, str(REPO_ROOT))  # the tests' fake platform

from providers.base import FaasConfig
from providers.packaging import build_azure_package
from tests.providers._azure_fake import FakeAzure
from tests.providers.contract._azure import azure_executor

JOB_ID = 1
_HANDLER_SOURCE = "def reverse(payload):\n    return payload[::-1]\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per side per round")
    parser.add_argument("--payload-bytes", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    payload = bytes(range(256)) * (args.payload_bytes // 256) + bytes(args.payload_bytes % 256)

    with tempfile.TemporaryDirectory(prefix="bench-azure-") as scratch:
        work = Path(scratch)
        (work / "jobs.py").write_text(_HANDLER_SOURCE)
        package = build_azure_package("jobs:reverse", sources=[work / "jobs.py"])
        with FakeAzure(work / "platform") as platform, azure_executor(platform) as executor:
            deployment = executor.deploy_job(JOB_ID, package, FaasConfig(timeout_secs=30))
            assert deployment.endpoint is not None
            key = platform.site(executor.app_name(JOB_ID)).key
            with httpx.Client(timeout=30) as bare:
                _measure(executor.invoke, bare, deployment.endpoint, key, payload, args)


def _measure(
    invoke: Callable[[int, bytes], bytes],
    bare: httpx.Client,
    url: str,
    key: str,
    payload: bytes,
    args: argparse.Namespace,
) -> None:
    body = f'{{"job_id":{JOB_ID},"args":[{",".join(map(str, payload))}]}}'.encode()
    headers = {"x-functions-key": key, "Content-Type": "application/json"}

    def bare_call() -> None:
        response = bare.post(url, content=body, headers=headers)
        response.raise_for_status()

    def executor_call() -> None:
        assert invoke(JOB_ID, payload) == payload[::-1]

    for call in (bare_call, executor_call):  # warm both connections and the key cache
        for _ in range(50):
            call()
    print(f"{args.calls} calls per side per round, payload {len(payload)} bytes, one at a time")
    print(
        f"{'round':<8}{'exec p50':>10}{'bare p50':>10}{'diff':>8}{'exec p99':>10}"
        f"{'bare p99':>10}{'exec cpu':>10}{'bare cpu':>10}   (ms; cpu in us/call)"
    )
    rows: list[tuple[float, ...]] = []
    for round_no in range(1, args.rounds + 1):
        samples: dict[str, list[float]] = {"exec": [], "bare": []}
        cpu: dict[str, float] = {"exec": 0.0, "bare": 0.0}
        for _ in range(args.calls):
            for name, call in (("exec", executor_call), ("bare", bare_call)):
                cpu_started, started = time.process_time(), time.perf_counter()
                call()
                samples[name].append(time.perf_counter() - started)
                cpu[name] += time.process_time() - cpu_started
        row = (
            percentile_ms(samples["exec"], 50),
            percentile_ms(samples["bare"], 50),
            percentile_ms(samples["exec"], 50) - percentile_ms(samples["bare"], 50),
            percentile_ms(samples["exec"], 99),
            percentile_ms(samples["bare"], 99),
            cpu["exec"] * 1e6 / args.calls,
            cpu["bare"] * 1e6 / args.calls,
        )
        rows.append(row)
        print(_line(str(round_no), row))
    print(_line("median", tuple(statistics.median(column) for column in zip(*rows, strict=True))))


def _line(label: str, row: tuple[float, ...]) -> str:
    latencies = "".join(
        f"{value:>10.3f}" if i != 2 else f"{value:>8.3f}" for i, value in enumerate(row[:5])
    )
    return f"{label:<8}{latencies}{row[5]:>10.0f}{row[6]:>10.0f}"


if __name__ == "__main__":
    main()

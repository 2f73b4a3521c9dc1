"""What the DigitalOcean executor costs over a bare HTTP POST of the same invocation.

Question: per invocation, how much latency and client CPU does ``DigitalOceanExecutor.invoke``
add (limiter, pooled client, activation record parsed into models, the handler core's reply
decoded) over a bare ``httpx`` POST of the same request to the same action, reading the same
result? Both sides hit one local fake of DigitalOcean Functions
(``tests/providers/_digitalocean_fake.py``, in a process of its own) running the same warm
action, and are interleaved call by call (the order alternating) so load on the box hits
both alike. Client CPU is this process's ``time.process_time``; the fake's is not counted.

    .venv/bin/python bench/digitalocean_invoke.py [--calls 400] [--payload-bytes 1024]
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from _support import log_tail, percentile_ms, start_process, stop_process

from providers.digitalocean import NAMESPACE_RATE_PER_MINUTE, DigitalOceanExecutor
from providers.packaging import build_digitalocean_package

_HANDLER = "def reverse(payload):\n    return payload[::-1]\n"
_JOB_ID = 1


def _bare_caller(
    base_url: str, token: str, payload: bytes
) -> tuple[Callable[[], bytes], httpx.Client]:
    """A POST of the executor's request with a plain httpx client; the namespace looked up once."""
    listed = httpx.get(
        f"{base_url}/v2/functions/namespaces", headers={"Authorization": f"Bearer {token}"}
    ).json()["namespaces"][0]
    client = httpx.Client(
        base_url=listed["api_host"], auth=httpx.BasicAuth(listed["uuid"], listed["key"])
    )
    url = f"/api/v1/namespaces/{listed['namespace']}/actions/blueprint-job-{_JOB_ID}"
    body = json.dumps({"job_id": _JOB_ID, "args": list(payload)}, separators=(",", ":"))

    def call() -> bytes:
        response = client.post(
            url,
            params={"blocking": "true"},
            content=body,
            headers={"Content-Type": "application/json"},
        )
        response.raise_for_status()
        return bytes(response.json()["response"]["result"]["result"])

    return call, client


def _timed(
    call: Callable[[], bytes], expected: bytes, walls: list[float], cpus: list[float]
) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    output = call()
    walls.append(time.perf_counter() - wall)
    cpus.append(time.process_time() - cpu)
    if output != expected:
        raise RuntimeError("a call returned the wrong output")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400, help="calls per side")
    parser.add_argument("--payload-bytes", type=int, default=1024)
    parser.add_argument(
        "--rate-per-minute",
        type=int,
        default=NAMESPACE_RATE_PER_MINUTE,
        help="the executor's client-side limit; raise it to measure the client alone",
    )
    options = parser.parse_args()
    token = f"dop_v1_bench_{secrets.token_hex(8)}"
    payload = bytes(range(256)) * (options.payload_bytes // 256) + bytes(
        options.payload_bytes % 256
    )
    expected = payload[::-1]
    with tempfile.TemporaryDirectory(prefix="bench-do-") as scratch:
        log = Path(scratch) / "fake.log"
        fake = start_process(
            [sys.executable, "-m", "tests.providers._digitalocean_fake", token],
            log,
            ready_line="serving ",
            what="the DigitalOcean fake",
        )
        client: httpx.Client | None = None
        try:
            base_url = log.read_text().split("serving ", 1)[1].split()[0]
            source = Path(scratch) / "bench_handler.py"
            source.write_text(_HANDLER)
            executor = DigitalOceanExecutor(
                token, "ams3", api_base_url=base_url, rate_per_minute=options.rate_per_minute
            )
            package = build_digitalocean_package("bench_handler:reverse", sources=[source])
            executor.deploy_job(_JOB_ID, package)
            bare, client = _bare_caller(base_url, token, payload)
            sides = {"executor": lambda: executor.invoke(_JOB_ID, payload), "bare httpx": bare}
            for call in sides.values():  # the container warm, connections open
                call()
            walls: dict[str, list[float]] = {name: [] for name in sides}
            cpus: dict[str, list[float]] = {name: [] for name in sides}
            names = list(sides)
            for index in range(options.calls):
                for name in names if index % 2 == 0 else names[::-1]:
                    _timed(sides[name], expected, walls[name], cpus[name])
            executor.close()
        except BaseException:
            print(log_tail(log), file=sys.stderr)
            raise
        finally:
            if client is not None:
                client.close()
            stop_process(fake)
    print(
        f"{options.calls} calls per side, payload {options.payload_bytes} B, sequential, "
        f"executor limited to {options.rate_per_minute}/min"
    )
    header = ("side", "p50 ms", "p99 ms", "CPU ms/call (p50)", "CPU ms/call (mean)")
    print(f"{header[0]:<12} {header[1]:>8} {header[2]:>8} {header[3]:>18} {header[4]:>19}")
    for name in names:
        mean_cpu_ms = sum(cpus[name]) / len(cpus[name]) * 1000
        print(
            f"{name:<12} {percentile_ms(walls[name], 50):>8.2f} "
            f"{percentile_ms(walls[name], 99):>8.2f} "
            f"{percentile_ms(cpus[name], 50):>18.3f} {mean_cpu_ms:>19.3f}"
        )
    ratio = percentile_ms(walls["executor"], 50) / percentile_ms(walls["bare httpx"], 50)
    cpu_ratio = sum(cpus["executor"]) / sum(cpus["bare httpx"])
    print(f"executor / bare: p50 x{ratio:.2f}, CPU x{cpu_ratio:.2f}")


if __name__ == "__main__":
    main()

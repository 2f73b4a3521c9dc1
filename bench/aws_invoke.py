"""Benchmark what LambdaExecutor.invoke costs on top of a bare boto3 invoke.

Question: against the same function on the same moto server, how much latency and client CPU
does ``LambdaExecutor.invoke`` (request encoding, the one-attempt client, reply and REPORT
parsing, error mapping, logging) add to a bare ``boto3`` ``invoke`` of the same body?

    .venv/bin/python bench/aws_invoke.py [--calls 1000] [--warmup 100] [--payload-bytes 64]

``moto_server`` runs in its own process with Lambda's non-docker backend, which answers each
invoke with the next queued result: every result is queued before the timed loop, so both
sides read the same reply shape (the entry point's ``{"result": [...]}``). Calls alternate,
executor then bare, so drift in the machine's load hits both sides alike. The bare side is a
default ``boto3.client("lambda")`` sending a body built once, with ``LogType=Tail``, reading the
payload. Printed: p50 and p99 of each side, their difference, and client CPU per call (this
process's CPU time; moto's is its own process and not counted).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import httpx
from _support import free_port, percentile_ms, stop_process, wait_until

from providers.aws import LambdaExecutor
from providers.base import FaasConfig
from providers.packaging import build_lambda_package

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/bench-lambda"
JOB_ID = 1
_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
_KEYS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench-secret"}


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/moto-api/data.json", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, "moto_server")
    httpx.post(f"{url}/moto-api/config", json={"lambda": {"use_docker": False}}).raise_for_status()
    return process, url


def queue_results(url: str, count: int, payload: bytes) -> None:
    reply = json.dumps({"job_id": JOB_ID, "result": list(payload[::-1]), "success": True})
    answer = httpx.post(
        f"{url}/moto-api/static/lambda-simple/response",
        json={"results": [reply] * count, "region": REGION, "account_id": "123456789012"},
        timeout=60.0,
    )
    answer.raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per side")
    parser.add_argument("--warmup", type=int, default=100, help="untimed calls per side first")
    parser.add_argument("--payload-bytes", type=int, default=64)
    options = parser.parse_args()
    payload = bytes(range(256)) * (options.payload_bytes // 256) + bytes(
        range(options.payload_bytes % 256)
    )
    process = None
    try:
        process, url = start_moto()
        boto3.client("iam", region_name=REGION, endpoint_url=url, **_KEYS).create_role(
            RoleName=ROLE.rsplit("/", 1)[1], AssumeRolePolicyDocument=json.dumps(_TRUST)
        )
        session = boto3.Session(region_name=REGION, **_KEYS)
        executor = LambdaExecutor(REGION, ROLE, endpoint_url=url, session=session)
        with tempfile.TemporaryDirectory() as scratch:
            source = Path(scratch) / "bench_job.py"
            source.write_text("def reverse(payload):\n    return payload[::-1]\n")
            package = build_lambda_package("bench_job:reverse", sources=[source])
        executor.deploy_job(JOB_ID, package, FaasConfig(memory_mb=128, timeout_secs=30))
        bare = session.client("lambda", endpoint_url=url)
        body = json.dumps({"job_id": JOB_ID, "args": list(payload)}).encode()
        name = executor.function_id(JOB_ID)
        queue_results(url, 2 * (options.warmup + options.calls), payload)

        def call_executor() -> None:
            assert executor.invoke(JOB_ID, payload) == payload[::-1]

        def call_bare() -> None:
            reply = bare.invoke(
                FunctionName=name, InvocationType="RequestResponse", LogType="Tail", Payload=body
            )
            reply["Payload"].read()

        sides = {"executor": call_executor, "bare boto3": call_bare}
        for _ in range(options.warmup):
            for call in sides.values():
                call()
        samples: dict[str, list[float]] = {side: [] for side in sides}
        cpu_s = dict.fromkeys(sides, 0.0)
        for _ in range(options.calls):
            for side, call in sides.items():
                cpu_started, started = time.process_time(), time.perf_counter()
                call()
                samples[side].append(time.perf_counter() - started)
                cpu_s[side] += time.process_time() - cpu_started

        print(f"{options.calls} calls per side, interleaved, payload {len(payload)} bytes")
        print(f"{'side':<12} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms/call':>12}")
        for side in sides:
            print(
                f"{side:<12} {percentile_ms(samples[side], 50):8.3f} "
                f"{percentile_ms(samples[side], 99):8.3f} "
                f"{cpu_s[side] / options.calls * 1000:12.3f}"
            )
        ours, theirs = samples["executor"], samples["bare boto3"]
        print(
            f"executor - bare: p50 {percentile_ms(ours, 50) - percentile_ms(theirs, 50):+.3f} ms, "
            f"p99 {percentile_ms(ours, 99) - percentile_ms(theirs, 99):+.3f} ms, cpu "
            f"{(cpu_s['executor'] - cpu_s['bare boto3']) / options.calls * 1000:+.3f} ms/call"
        )
    finally:
        stop_process(process)


if __name__ == "__main__":
    main()

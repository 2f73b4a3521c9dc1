"""The operations commands end to end: real reference server, real Redis, real workers.

Every command runs in-process through typer's CliRunner with ``--json``; the JSON on stdout
is compared whole. Errors are one red line on stderr and exit status 1.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner, Result

from dispatcher import JobCall, Settings
from dispatcher.cli import cli
from dispatcher.keys import job_queue
from dispatcher.records import HealthStatus, InvocationRecord, append_invocation, store_health
from dispatcher.runner import submit
from providers.custom import HttpFaasExecutor
from tests.workers import apps
from tests.workers.conftest import FAST_KNOBS, StartWorker, free_port, wait_until

pytestmark = pytest.mark.integration

OPS_APP = "tests.dispatcher.ops_app"
HANDLER_SOURCE = Path(__file__).with_name("_ops_handler.py")

Invoke = Callable[..., Result]


@pytest.fixture
def invoke(settings: Settings, reference_server: str) -> Invoke:
    """Run ``blueprint-faas ARGS`` in-process with this test's Redis and reference server."""
    env = {**settings.to_env(), apps.FAAS_URL_ENV: reference_server}

    def run(*args: str, extra_env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), env={**env, **(extra_env or {})})

    return run


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def error_line(result: Result) -> str:
    """The one stderr line of a failed command (exit status 1, no traceback)."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- deploy, info, health, warm, undeploy ---------------------------------------------------


def test_deploy_info_health_warm_undeploy_round_trip(invoke: Invoke, reference_server: str) -> None:
    deployed = ok_json(
        invoke(
            "deploy", "7", "--app", OPS_APP, "--handler", "_ops_handler:reverse",
            "--source", str(HANDLER_SOURCE), "--memory", "256", "--timeout", "5",
            "--env", "GREETING=hello", "--max-concurrency", "3", "--json",
        )
    )  # fmt: skip
    endpoint = f"{reference_server}/api/functions/blueprint-job-7/invoke"
    expected = {
        "endpoint": endpoint,
        "function_id": "blueprint-job-7",
        "job_id": 7,
        "memory_mb": 256,
        "provider": "custom",
        "status": "deployed",
        "timeout_secs": 5,
    }
    assert isinstance(deployed.pop("cold_start_ms"), float)
    assert isinstance(deployed.pop("package_size_bytes"), int)
    assert deployed == {**expected, "deployed_at": None}
    # The deployed function is the handler we named: it reverses its input.
    with HttpFaasExecutor(reference_server) as executor:
        assert executor.invoke(7, b"abc") == b"cba"

    info = ok_json(invoke("info", "7", "--app", OPS_APP, "--provider", "custom", "--json"))
    assert isinstance(info.pop("cold_start_ms"), float)
    assert isinstance(info.pop("package_size_bytes"), int)
    assert info.pop("deployed_at").startswith("20")
    assert info == expected

    assert ok_json(invoke("health", "7", "--app", OPS_APP, "--json")) == {
        "healthy": True,
        "job_id": 7,
    }
    assert ok_json(invoke("warm", "7", "--app", OPS_APP, "--instances", "2", "--json")) == {
        "instances_warmed": 2,
        "job_id": 7,
    }
    assert ok_json(invoke("undeploy", "7", "--app", OPS_APP, "--json")) == {
        "job_id": 7,
        "undeployed": True,
    }

    unhealthy = invoke("health", "7", "--app", OPS_APP, "--json")
    assert unhealthy.exit_code == 2
    assert json.loads(unhealthy.stdout) == {"healthy": False, "job_id": 7}
    assert error_line(invoke("info", "7", "--app", OPS_APP, "--json")).startswith(
        "error: not_deployed: GET "
    )


def test_deploy_prints_a_table_and_never_an_environment_value(invoke: Invoke) -> None:
    result = invoke(
        "deploy", "9", "--app", OPS_APP, "--handler", "_ops_handler:reverse",
        "--source", str(HANDLER_SOURCE), "--env", "API_TOKEN=hunter2",
    )  # fmt: skip
    try:
        assert result.exit_code == 0, result.output
        assert "Deployed job 9" in result.stdout
        assert "blueprint-job-9" in result.stdout
        assert "hunter2" not in result.output
    finally:
        invoke("undeploy", "9", "--app", OPS_APP)


def test_deploy_keeps_the_jobs_config_in_the_app_for_what_it_is_not_told(
    invoke: Invoke,
) -> None:
    deploy = ["deploy", "9", "--app", OPS_APP, "--handler", "_ops_handler:reverse",
              "--source", str(HANDLER_SOURCE), "--json"]  # fmt: skip
    try:
        as_configured = ok_json(invoke(*deploy))
        more_memory = ok_json(invoke(*deploy, "--memory", "256"))
    finally:
        invoke("undeploy", "9", "--app", OPS_APP)

    configured = (apps.FAAS_CONFIG.memory_mb, apps.FAAS_CONFIG.timeout_secs)
    assert (as_configured["memory_mb"], as_configured["timeout_secs"]) == configured
    assert (more_memory["memory_mb"], more_memory["timeout_secs"]) == (
        256,
        apps.FAAS_CONFIG.timeout_secs,
    )


def test_a_bad_environment_entry_is_refused_without_echoing_its_value(invoke: Invoke) -> None:
    for entry in ("hunter2", "bad name=hunter2"):
        line = error_line(
            invoke(
                "deploy", "9", "--app", OPS_APP, "--handler", "_ops_handler:reverse",
                "--source", str(HANDLER_SOURCE), "--env", entry,
            )
        )  # fmt: skip
        assert line.startswith("error: invalid_config: ")
        assert "hunter2" not in line


def test_an_out_of_range_memory_is_refused_with_the_rule(invoke: Invoke) -> None:
    line = error_line(
        invoke(
            "deploy", "9", "--app", OPS_APP, "--handler", "_ops_handler:reverse",
            "--source", str(HANDLER_SOURCE), "--memory", "10",
        )
    )  # fmt: skip
    assert line == (
        "error: invalid_config: invalid function config: memory_mb: Input should be greater "
        "than or equal to 64"
    )


# -- errors ---------------------------------------------------------------------------------


def test_undeploy_of_an_unknown_job_is_one_clear_error(invoke: Invoke) -> None:
    assert error_line(invoke("undeploy", "99", "--app", OPS_APP)) == (
        "error: no handler or FaaS executor is registered for job 99"
    )


def test_a_provider_other_than_the_registered_one_is_refused(invoke: Invoke) -> None:
    assert error_line(invoke("info", "7", "--app", OPS_APP, "--provider", "aws")) == (
        "error: job 7 runs on provider 'custom', not 'aws' (see the app's registry)"
    )


def test_a_local_job_has_no_function_to_warm(invoke: Invoke) -> None:
    assert error_line(invoke("warm", "0", "--app", OPS_APP)) == (
        "error: job 0 runs locally: it has no FaaS executor"
    )


@pytest.mark.parametrize("command", ["info", "health", "warm", "undeploy"])
def test_a_platform_that_is_down_is_one_clear_error(invoke: Invoke, command: str) -> None:
    line = error_line(invoke(command, "8", "--app", OPS_APP, "--json"))
    assert line.startswith("error: invocation_failed: ")
    assert line.endswith("ConnectError: [Errno 111] Connection refused")


def test_an_app_that_cannot_be_imported_is_one_clear_error(invoke: Invoke) -> None:
    assert error_line(invoke("status", "--app", "no_such_module")) == (
        "error: cannot import app module 'no_such_module': No module named 'no_such_module'"
    )


def test_an_unreachable_redis_is_one_clear_error(invoke: Invoke) -> None:
    down = Settings.from_redis_url(f"redis://127.0.0.1:{free_port()}/0", **FAST_KNOBS).to_env()
    line = error_line(invoke("cost", "--app", OPS_APP, extra_env=down))
    assert line.startswith("error: Redis unreachable: ")


# -- status ---------------------------------------------------------------------------------


def _status_by_job(invoke: Invoke) -> dict[int, dict[str, Any]]:
    report = ok_json(
        invoke("status", "--app", "tests.workers.apps", "--inspect-timeout", "2", "--json")
    )
    return {job["job_id"]: job for job in report["jobs"]}


def test_status_shows_local_and_faas_jobs_queues_health_and_workers(
    invoke: Invoke, blueprint: Any, redis_url: str, start_worker: StartWorker
) -> None:
    client = redis.Redis.from_url(redis_url)
    checked = store_health(client, 1, HealthStatus.HEALTHY)
    for n in range(3):
        submit(blueprint, JobCall(3, bytes([n])))
    for n in range(2):
        submit(blueprint, JobCall(0, bytes([n])))

    jobs = _status_by_job(invoke)

    def local(job_id: int, queued: int, workers: list[str]) -> dict[str, Any]:
        return {
            "job_id": job_id,
            "runs_on": "local",
            "provider": None,
            "deployment": None,
            "deployment_error": None,
            "health": None,
            "queue": job_queue(job_id),
            "queue_length": queued,
            "workers": workers,
            "placement": "local",
            "lane_queue": None,
            "lane_queue_length": 0,
            "breaker": None,
            "budget": None,
        }

    def faas(job_id: int, deployment: str, health: dict[str, Any] | None) -> dict[str, Any]:
        return {
            **local(job_id, 0, []),
            "runs_on": "faas",
            "provider": "custom",
            "deployment": deployment,
            "health": health,
            "placement": "faas",
            "breaker": {"state": "closed", "cooldown_left_s": 0.0, "consecutive_failures": 0},
        }

    healthy = {"status": "healthy", "checked_at": checked.checked_at, "error": None}
    # Job 5's "platform" is a bare test function that answers no control-plane request.
    flaky_error = jobs[5].pop("deployment_error")
    assert flaky_error.startswith("infrastructure: GET ")
    assert jobs == {
        0: local(0, 2, []),
        1: faas(1, "deployed", healthy),
        2: local(2, 0, []),
        3: local(3, 3, []),
        4: local(4, 0, []),
        5: {
            key: value for key, value in faas(5, "error", None).items() if key != "deployment_error"
        },
        6: faas(6, "deployed", None),
    }

    worker = start_worker(jobs="0")
    name = f"blueprint-{worker.process.pid}@{socket.gethostname()}"
    jobs = wait_until(
        lambda: (found := _status_by_job(invoke))[0]["queue_length"] == 0 and found,
        what="the worker to drain job 0's queue",
    )
    assert jobs[0] == local(0, 0, [name])
    assert jobs[3] == local(3, 3, [])


# -- cost -----------------------------------------------------------------------------------


def _record(job_id: int, provider: str, **fields: Any) -> InvocationRecord:
    return InvocationRecord(ts=1_700_000_000.0, job_id=job_id, provider=provider, **fields)


def test_cost_summarises_the_ledger_and_prices_a_job_on_every_provider(
    invoke: Invoke, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    for record in (
        _record(7, "custom", ok=True, total_ms=100, execution_ms=80, memory_mb=1024, cost_usd=0),
        _record(7, "custom", ok=True, total_ms=200, execution_ms=150, memory_mb=1024),
        _record(7, "custom", ok=False, error_kind="function_error", total_ms=300,
                execution_ms=250, memory_mb=1024),
        _record(7, "custom", ok=True, total_ms=400, memory_mb=1024),
        _record(9, "aws", ok=True, total_ms=130, billed_ms=120, memory_mb=128, cost_usd=2.2e-6),
        _record(9, "aws", ok=True, total_ms=90, billed_ms=80, memory_mb=128, cost_usd=1.5e-6),
    ):  # fmt: skip
        append_invocation(client, record)

    report = ok_json(invoke("cost", "--app", OPS_APP, "--job", "7", "--json"))

    # Nearest rank: p50 of 4 is the 2nd smallest, p95 the 4th; of 2, the 1st and the 2nd.
    # Durations priced for job 7: execution_ms, else total_ms: 80, 150, 250, 400 ms at 1 GiB.
    per_invocation = {
        # 1 ms steps: mean 220 ms x $0.0000166667/GB-s + $0.20/M requests
        "aws": 0.220 * 0.0000166667 + 0.20e-6,
        # 100 ms steps (100, 200, 300, 400: mean 250 ms), 0.583 vCPU at 1 GiB, $0.40/M
        "gcp": 0.250 * (0.0000025 + 0.583 * 0.000024) + 0.40e-6,
        # Flex: 1,000 ms minimum (every one of these), a 2,048 MB instance for 1 GiB, $0.40/M
        "azure": 1.0 * 2 * 0.000026 + 0.40e-6,
        # 100 ms minimum, no request fee
        "digitalocean": 0.225 * 0.0000185,
        "custom": 0.0,
    }
    regions = {
        "aws": "us-east-1",
        "gcp": "us-central1",
        "azure": "eastus",
        "digitalocean": "nyc1",
        "custom": "default",
    }
    assert report == {
        "invocations": 6,
        "jobs": [
            {
                "job_id": 7,
                "provider": "custom",
                "count": 4,
                "errors": 1,
                "p50_ms": 200.0,
                "p95_ms": 400.0,
                "billed_s": 0.0,
                "cost_usd": 0.0,
            },
            {
                "job_id": 9,
                "provider": "aws",
                "count": 2,
                "errors": 0,
                "p50_ms": 90.0,
                "p95_ms": 130.0,
                "billed_s": pytest.approx(0.2),
                "cost_usd": pytest.approx(3.7e-6),
            },
        ],
        "comparison": {
            "job_id": 7,
            "memory_mb": 1024.0,
            "providers": [
                {
                    "provider": provider,
                    "region": regions[provider],
                    "per_invocation_usd": pytest.approx(usd),
                    "per_million_usd": pytest.approx(usd * 1_000_000),
                }
                for provider, usd in per_invocation.items()
            ],
        },
    }

    last_two = ok_json(invoke("cost", "--app", OPS_APP, "--last", "2", "--json"))
    assert [(job["job_id"], job["count"]) for job in last_two["jobs"]] == [(9, 2)]
    assert "comparison" not in last_two

    at_512 = ok_json(invoke("cost", "--app", OPS_APP, "--job", "7", "--memory", "512", "--json"))
    aws = at_512["comparison"]["providers"][0]
    assert aws["per_invocation_usd"] == pytest.approx(0.220 * 0.5 * 0.0000166667 + 0.20e-6)

    table = invoke("cost", "--app", OPS_APP, "--job", "7")
    assert table.exit_code == 0, table.output
    assert "Job 7 at 1024 MB on each provider" in table.stdout


def test_cost_counts_the_invocations_real_jobs_made(
    invoke: Invoke, blueprint: Any, start_worker: StartWorker
) -> None:
    start_worker()
    for n in (2, 3, 4):
        result = submit(blueprint, JobCall(1, n.to_bytes(8, "big")), wait=True, timeout_s=30)
        assert result is not None and result.ok
    failed = submit(blueprint, JobCall(6, b""), wait=True, timeout_s=30)
    assert failed is not None and not failed.ok

    report = ok_json(invoke("cost", "--app", "tests.workers.apps", "--job", "1", "--json"))

    jobs = {job["job_id"]: job for job in report["jobs"]}
    assert report["invocations"] == 4
    assert (jobs[1]["provider"], jobs[1]["count"], jobs[1]["errors"]) == ("custom", 3, 0)
    assert (jobs[6]["provider"], jobs[6]["count"], jobs[6]["errors"]) == ("custom", 1, 1)
    assert jobs[1]["p50_ms"] <= jobs[1]["p95_ms"]
    # The custom platform is free unless the operator prices it; job 1 runs with 128 MB.
    assert report["comparison"]["memory_mb"] == 128.0
    assert [quote["provider"] for quote in report["comparison"]["providers"]] == [
        "aws",
        "gcp",
        "azure",
        "digitalocean",
        "custom",
    ]

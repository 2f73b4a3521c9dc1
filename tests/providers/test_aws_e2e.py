"""A job on Lambda end to end: the CLI deploys it, a worker runs it, a runner gets its result.

moto's server (through the Lambda front, which runs the deployed package) stands in for AWS;
Redis, the worker and ``blueprint-faas submit`` are real processes. The settings file alone
declares the job, with its keys given as ``env:NAME``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent

import pytest
from typer.testing import CliRunner

from dispatcher.cli import cli
from dispatcher.settings import ENV_PREFIX
from tests.providers._lambda_platform import ROLE_ARN, LambdaFront, local_lambda
from tests.workers.conftest import (  # noqa: F401  (fixtures are found by name)
    FAST_KNOBS,
    ROOT,
    WORKER_READY,
    redis_server,
    redis_url,
    spawn_cli,
)

pytestmark = pytest.mark.integration

SECRET = "e2e-lambda-secret-5d1e"
CREDENTIALS = {"LAMBDA_KEY_ID": "AKIDE2E", "LAMBDA_SECRET": SECRET}


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LambdaFront]:
    with local_lambda(tmp_path_factory.mktemp("aws-e2e")) as front:
        yield front


@pytest.fixture
def app_file(tmp_path: Path, redis_url: str, front: LambdaFront) -> Path:  # noqa: F811
    knobs = "\n".join(f"{name} = {json.dumps(value)}" for name, value in FAST_KNOBS.items())
    path = tmp_path / "app.toml"
    path.write_text(
        f'broker_url = "{redis_url}"\n{knobs}\n'
        + dedent(
            f"""
            [faas.jobs.1]
            provider = "aws"
            memory_mb = 256
            timeout_secs = 3

            [faas.jobs.1.options]
            region = "us-east-1"
            role_arn = "{ROLE_ARN}"
            endpoint_url = "{front.url}"
            access_key_id = "env:LAMBDA_KEY_ID"
            secret_access_key = "env:LAMBDA_SECRET"
            """
        )
    )
    return path


def ok_json(*args: str) -> object:
    result = CliRunner().invoke(cli, [*args, "--json"], env=CREDENTIALS)
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    return json.loads(result.stdout)


def test_the_cli_deploys_a_lambda_job_that_a_worker_runs_for_a_runner(
    app_file: Path, tmp_path: Path, front: LambdaFront
) -> None:
    app = str(app_file)
    squaring = str(ROOT / "dispatcher" / "_squaring.py")
    deployed = ok_json(
        "deploy", "1", "--app", app, "--handler", "_squaring:square", "--source", squaring,
        "--env", "MODE=e2e", "--memory", "256", "--timeout", "3",
    )  # fmt: skip
    assert isinstance(deployed, dict) and deployed["function_id"] == "blueprint-job-1"
    info = ok_json("info", "1", "--app", app, "--provider", "aws")
    assert isinstance(info, dict)
    assert (info["memory_mb"], info["timeout_secs"], info["status"]) == (256, 3, "Active")
    assert info["endpoint"].endswith(":function:blueprint-job-1")
    assert ok_json("health", "1", "--app", app) == {"healthy": True, "job_id": 1}
    assert ok_json("warm", "1", "--app", app, "--instances", "2") == {
        "instances_warmed": 2,
        "job_id": 1,
    }

    env = {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}
    env.update(CREDENTIALS, PYTHONPATH=str(ROOT))
    args = ["worker", "--app", app, "--pool", "threads", "--concurrency", "2"]
    worker = spawn_cli(args, env, tmp_path / "worker.log", ready=WORKER_READY)
    try:
        command = [sys.executable, "-m", "dispatcher", "submit", "--app", app, "1"]
        command += ["--args-hex", (7).to_bytes(8, "big").hex(), "--wait", "--timeout-s", "60"]
        done = subprocess.run(
            command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
    finally:
        worker.stop()

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == f"ok job=1 ran_on=aws body_hex={(49).to_bytes(16, 'big').hex()}"
    # Two warm-ups and the job's run reached Lambda.
    assert front.count("Invoke", "blueprint-job-1") == 3
    assert SECRET not in worker.output()
    assert ok_json("undeploy", "1", "--app", app) == {"job_id": 1, "undeployed": True}
    gone = CliRunner().invoke(cli, ["health", "1", "--app", app, "--json"], env=CREDENTIALS)
    assert (gone.exit_code, json.loads(gone.stdout)) == (2, {"healthy": False, "job_id": 1})

"""A job declared on GCP in a settings file runs end to end: runner, Redis, worker, function.

The worker (``blueprint-faas worker --app app.toml``, a real process) builds the gcp executor
from the file's options, gets its tokens from google-auth with the local platform's
service-account file, and forwards job 1 to the demo's squaring function, deployed on the
platform and served by functions-framework; ``blueprint-faas submit`` (another process) gets
the result through Redis.
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
from providers.base import FaasConfig
from providers.packaging import build_gcp_package
from tests.providers._gcp_platform import PROJECT, REGION, GcpPlatform
from tests.providers.contract._gcp import platform_executor
from tests.workers.conftest import (  # noqa: F401  (fixtures are found by name)
    FAST_KNOBS,
    ROOT,
    WORKER_READY,
    redis_server,
    redis_url,
    spawn_cli,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcpPlatform]:
    """The local platform, with the demo's squaring function deployed as job 1."""
    with GcpPlatform(tmp_path_factory.mktemp("gcp-e2e")) as platform:
        package = build_gcp_package(
            "_squaring:square", sources=[ROOT / "dispatcher" / "_squaring.py"]
        )
        with platform_executor(platform) as executor:
            executor.deploy_job(1, package, FaasConfig(memory_mb=256, timeout_secs=3))
        yield platform


@pytest.fixture
def app_file(tmp_path: Path, redis_url: str, platform: GcpPlatform) -> Path:  # noqa: F811
    knobs = "\n".join(f"{name} = {json.dumps(value)}" for name, value in FAST_KNOBS.items())
    path = tmp_path / "app.toml"
    path.write_text(
        f'broker_url = "{redis_url}"\n{knobs}\n'
        + dedent(
            f"""
            [faas.jobs.1]
            provider = "gcp"
            memory_mb = 256
            timeout_secs = 3

            [faas.jobs.2]
            provider = "gcp"
            timeout_secs = 3

            [faas.options.gcp]
            project_id = "{PROJECT}"
            region = "{REGION}"
            credentials_file = "{platform.service_account_file}"
            api_base_url = "{platform.base_url}"
            """
        )
    )
    return path


def test_a_job_on_gcp_runs_through_runner_redis_and_worker(
    app_file: Path, tmp_path: Path, platform: GcpPlatform
) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}
    env["PYTHONPATH"] = str(ROOT)
    args = ["worker", "--app", str(app_file), "--pool", "threads", "--concurrency", "2"]
    worker = spawn_cli(args, env, tmp_path / "worker.log", ready=WORKER_READY)
    try:
        outputs = [_submit(app_file, env, n) for n in (7, 12)]
    finally:
        worker.stop()

    assert outputs == [
        f"ok job=1 ran_on=gcp body_hex={(n * n).to_bytes(16, 'big').hex()}" for n in (7, 12)
    ]
    assert platform.invocations("blueprint-job-1") == 2
    # The worker learnt the function's URI once and fetched one ID token for both calls.
    assert platform.token_grants["id"] == 1
    assert not any(token in worker.output() for token in platform.issued_tokens())


def test_the_cli_packages_deploys_describes_and_removes_a_gcp_job(
    app_file: Path, platform: GcpPlatform
) -> None:
    runner = CliRunner()
    source = str(ROOT / "dispatcher" / "_squaring.py")

    command = ["deploy", "2", "--app", str(app_file), "--handler", "_squaring:square"]
    command += ["--source", source, "--memory", "384", "--timeout", "20", "--json"]
    deployed = runner.invoke(cli, command)
    assert deployed.exit_code == 0, deployed.output
    health = runner.invoke(cli, ["health", "2", "--app", str(app_file), "--json"])
    info = runner.invoke(cli, ["info", "2", "--app", str(app_file), "--json"])
    stored = platform.function("blueprint-job-2")
    removed = runner.invoke(cli, ["undeploy", "2", "--app", str(app_file)])

    assert json.loads(health.stdout) == {"healthy": True, "job_id": 2}
    described = json.loads(info.stdout)
    assert (described["function_id"], described["memory_mb"], described["timeout_secs"]) == (
        "blueprint-job-2",
        384,
        20,
    )
    assert described["endpoint"] == f"{platform.base_url}/run/blueprint-job-2"
    # The platform turns a function ACTIVE once functions-framework serves what was uploaded:
    # the CLI built the gcp package for the job's provider.
    assert stored is not None and stored["buildConfig"]["entryPoint"] == "blueprint_entry"
    assert removed.exit_code == 0
    assert platform.function("blueprint-job-2") is None


def _submit(app_file: Path, env: dict[str, str], n: int) -> str:
    command = [sys.executable, "-m", "dispatcher", "submit", "--app", str(app_file), "1"]
    command += ["--args-hex", n.to_bytes(8, "big").hex(), "--wait", "--timeout-s", "60"]
    done = subprocess.run(
        command, env=env, cwd=app_file.parent, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()

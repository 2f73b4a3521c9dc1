"""A settings file alone defines an app, and real processes run it.

No Python app module: the file sets the broker, names the local jobs' module and declares a
FaaS job on a reference server that wants an API key, given as ``env:FAAS_KEY``. A real
``blueprint-faas worker --app app.toml`` serves both jobs and ``blueprint-faas submit --app
app.toml --wait`` (another process) gets their results, on this test's own Redis.
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
from providers.custom import HttpFaasExecutor
from tests import faas_server
from tests.workers.conftest import FAST_KNOBS, ROOT, WORKER_READY, spawn_cli

pytestmark = pytest.mark.integration

API_KEY = "key-3f9c1a"
LOCAL_JOBS = dedent(
    """
    from dispatcher import Router

    router = Router()


    @router.job(0)
    def cube(args: bytes) -> bytes:
        n = int.from_bytes(args, "big")
        return (n**3).to_bytes(16, "big")
    """
)


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A reference server that wants an API key, with the squaring function as job 1."""
    env = {**os.environ, "BLUEPRINT_FAAS_SERVER_API_KEY": API_KEY}
    with faas_server.reference_server(tmp_path_factory.mktemp("keyed-faas"), env=env) as url:
        executor = HttpFaasExecutor(url).with_auth_header("Authorization", f"Bearer {API_KEY}")
        with executor:
            executor.deploy_job(1, faas_server.squaring_package())
        yield url


@pytest.fixture
def app_file(tmp_path: Path, redis_url: str, keyed_server: str) -> Path:
    (tmp_path / "cubes.py").write_text(LOCAL_JOBS)
    knobs = "\n".join(f"{name} = {json.dumps(value)}" for name, value in FAST_KNOBS.items())
    path = tmp_path / "app.toml"
    path.write_text(
        f'broker_url = "{redis_url}"\n{knobs}\n'
        + dedent(
            f"""
            [local]
            module = "cubes"

            [faas.jobs.1]
            provider = "custom"
            memory_mb = 128
            timeout_secs = 3

            [faas.jobs.1.options]
            base_url = "{keyed_server}"
            auth_header = {{ name = "Authorization", value = "env:FAAS_KEY" }}
            """
        )
    )
    return path


def file_only_env(tmp_path: Path) -> dict[str, str]:
    """This process's environment with no BLUEPRINT_FAAS_* variable: the file says it all."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(tmp_path)])
    env["FAAS_KEY"] = f"Bearer {API_KEY}"
    return env


def submit(app_file: Path, env: dict[str, str], job_id: int, n: int) -> str:
    command = [sys.executable, "-m", "dispatcher", "submit", "--app", str(app_file)]
    command += [str(job_id), "--args-hex", n.to_bytes(8, "big").hex(), "--wait"]
    command += ["--timeout-s", "60"]
    done = subprocess.run(
        command, env=env, cwd=app_file.parent, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def test_a_settings_file_alone_is_an_app_that_worker_and_submit_run(
    app_file: Path, tmp_path: Path
) -> None:
    env = file_only_env(tmp_path)
    args = ["worker", "--app", str(app_file), "--pool", "threads", "--concurrency", "2"]
    worker = spawn_cli(args, env, tmp_path / "worker.log", ready=WORKER_READY)
    try:
        assert submit(app_file, env, 0, 5) == (
            f"ok job=0 ran_on=local body_hex={(125).to_bytes(16, 'big').hex()}"
        )
        assert submit(app_file, env, 1, 7) == (
            f"ok job=1 ran_on=custom body_hex={(49).to_bytes(16, 'big').hex()}"
        )
    finally:
        worker.stop()
    assert API_KEY not in worker.output()


def test_the_operations_commands_take_the_settings_file_too(
    app_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    env = {"FAAS_KEY": f"Bearer {API_KEY}"}

    result = CliRunner().invoke(cli, ["health", "1", "--app", str(app_file), "--json"], env=env)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"healthy": True, "job_id": 1}
    # Without the key the platform refuses, and the error is one line that names no secret.
    refused = CliRunner().invoke(
        cli, ["health", "1", "--app", str(app_file)], env={"FAAS_KEY": "Bearer wrong"}
    )
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: auth: ")
    assert "wrong" not in refused.output

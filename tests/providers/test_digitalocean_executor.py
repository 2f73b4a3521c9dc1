"""The DigitalOcean executor against the local fake, which runs the generated actions for real.

Ends with a job declared on DigitalOcean in a settings file, run end to end by a real worker
process and ``blueprint-faas submit`` through this test's own Redis.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from dispatcher import load_app
from dispatcher.cli import cli
from dispatcher.settings import ENV_PREFIX
from providers.base import FaasConfig
from providers.digitalocean import DEFAULT_NAMESPACE_LABEL, DigitalOceanExecutor
from providers.errors import FunctionError
from providers.packaging import ENV_PARAMETER, build_digitalocean_package
from providers.registry import create_executor
from tests.providers._digitalocean_fake import FakeDigitalOcean, Script
from tests.workers.conftest import (  # noqa: F401  (fixtures are found by name)
    FAST_KNOBS,
    ROOT,
    WORKER_READY,
    redis_server,
    redis_url,
    spawn_cli,
)

pytestmark = pytest.mark.integration

TOKEN = "dop_v1_executor_token_5f0c2a9e1d"
HANDLERS = dedent(
    """
    import os


    def square(payload):
        n = int.from_bytes(payload, "big")
        return (n * n).to_bytes(16, "big")


    def greet(payload):
        return ("%s %s" % (os.environ["GREETING"], payload.decode())).encode()


    def fail(payload):
        raise KeyError("missing")
    """
)


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeDigitalOcean]:
    with FakeDigitalOcean(TOKEN, tmp_path_factory.mktemp("fake-do")) as platform:
        yield platform


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    source = tmp_path_factory.mktemp("handlers") / "jobs.py"
    source.write_text(HANDLERS)
    return [source]


@pytest.fixture
def executor(fake: FakeDigitalOcean) -> Iterator[DigitalOceanExecutor]:
    with DigitalOceanExecutor(TOKEN, "lon1", api_base_url=fake.url) as executor:
        yield executor


def package(sources: list[Path], handler: str) -> bytes:
    return build_digitalocean_package(f"jobs:{handler}", sources=sources)


def test_a_first_call_creates_the_namespace_and_deploys_the_action(
    fake: FakeDigitalOcean, executor: DigitalOceanExecutor, sources: list[Path]
) -> None:
    deployment = executor.deploy_job(20, package(sources, "square"), FaasConfig(memory_mb=128))

    (namespace,) = [ns.record for ns in fake.namespaces if ns.record["region"] == "lon1"]
    assert namespace["label"] == DEFAULT_NAMESPACE_LABEL
    stored = fake.action(namespace["namespace"], "blueprint-job-20")
    assert stored is not None
    assert stored["limits"]["memory"] == 128
    assert deployment.endpoint == (
        f"{fake.url}/api/v1/namespaces/{namespace['namespace']}/actions/blueprint-job-20"
    )


def test_the_first_invoke_of_a_container_is_cold_and_the_next_warm(
    executor: DigitalOceanExecutor, sources: list[Path]
) -> None:
    executor.deploy_job(21, package(sources, "square"))

    first = executor.invoke_with_metrics(21, (12).to_bytes(2, "big"))
    second = executor.invoke_with_metrics(21, (3).to_bytes(2, "big"))

    assert int.from_bytes(first.body, "big") == 144
    assert int.from_bytes(second.body, "big") == 9
    assert first.metrics.cold_start is True
    assert second.metrics.cold_start is False
    assert second.metrics.execution_ms is not None


def test_env_vars_reach_the_handler_through_the_actions_parameter(
    fake: FakeDigitalOcean, executor: DigitalOceanExecutor, sources: list[Path]
) -> None:
    config = FaasConfig(env_vars={"GREETING": "hello"})
    deployment = executor.deploy_job(22, package(sources, "greet"), config)

    assert executor.invoke(22, b"world") == b"hello world"
    namespace = deployment.endpoint.split("/namespaces/")[1].split("/")[0]  # type: ignore[union-attr]
    stored = fake.action(namespace, "blueprint-job-22")
    assert stored is not None and stored["parameters"] == {ENV_PARAMETER: {"GREETING": "hello"}}


def test_an_activation_that_outlives_the_blocking_wait_is_polled_to_its_result(
    fake: FakeDigitalOcean, executor: DigitalOceanExecutor, sources: list[Path]
) -> None:
    executor.deploy_job(23, package(sources, "square"))

    with fake.scripted(executor.function_id(23), Script.ASYNC):
        assert int.from_bytes(executor.invoke(23, b"\x05"), "big") == 25


def test_a_raising_handler_is_a_function_error_naming_its_exception(
    executor: DigitalOceanExecutor, sources: list[Path]
) -> None:
    executor.deploy_job(24, package(sources, "fail"))

    with pytest.raises(FunctionError, match="KeyError: 'missing'"):
        executor.invoke(24, b"x")


def test_health_and_warm_use_warmups_that_run_no_job(
    fake: FakeDigitalOcean, executor: DigitalOceanExecutor, sources: list[Path]
) -> None:
    # The failing handler: a warm-up that ran the job would fail.
    executor.deploy_job(25, package(sources, "fail"))

    assert executor.health_check(25) is True
    assert executor.warm(25, 3) == 3
    assert fake.invocations_of(executor.function_id(25)) == 4


def test_a_redeploy_replaces_the_code_and_bumps_the_version(
    executor: DigitalOceanExecutor, sources: list[Path]
) -> None:
    first = executor.deploy_job(26, package(sources, "fail"))
    second = executor.deploy_job(26, package(sources, "square"))

    assert first.status != second.status == executor.get_deployment(26).status
    assert int.from_bytes(executor.invoke(26, b"\x04"), "big") == 16


def test_undeploy_keeps_the_namespace(
    fake: FakeDigitalOcean, executor: DigitalOceanExecutor, sources: list[Path]
) -> None:
    executor.deploy_job(27, package(sources, "square"))
    namespaces_before = len(fake.namespaces)

    executor.undeploy_job(27)

    assert executor.health_check(27) is False
    assert len(fake.namespaces) == namespaces_before


# -- options ----------------------------------------------------------------------------


def test_the_executor_is_built_from_options_with_the_token_from_the_environment(
    fake: FakeDigitalOcean, sources: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DO_TEST_TOKEN", TOKEN)

    executor = create_executor(
        "digitalocean",
        {
            "token": "env:DO_TEST_TOKEN",
            "region": "lon1",
            "api_base_url": fake.url,
            "function_prefix": "opts",
            "rate_per_minute": 120,
        },
    )

    assert isinstance(executor, DigitalOceanExecutor)
    assert executor.function_id(3) == "opts-3"
    executor.deploy_job(3, package(sources, "square"))
    assert int.from_bytes(executor.invoke(3, b"\x06"), "big") == 36
    assert TOKEN not in repr(executor)


def test_options_default_the_token_to_digitalocean_token(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="DIGITALOCEAN_TOKEN is not set"):
        create_executor("digitalocean", {"region": "nyc1"})

    monkeypatch.setenv("DIGITALOCEAN_TOKEN", TOKEN)
    assert create_executor("digitalocean", {"region": "nyc1"}).region == "nyc1"


def test_options_refuse_a_missing_region_and_unknown_keys_without_quoting_the_token() -> None:
    with pytest.raises(ValidationError) as caught:
        create_executor("digitalocean", {"token": TOKEN, "zone": "nyc1"})

    assert "region" in str(caught.value)
    assert "zone" in str(caught.value)
    assert TOKEN not in str(caught.value)


# -- end to end -------------------------------------------------------------------------


def test_a_job_on_digitalocean_runs_through_runner_redis_and_worker(
    fake: FakeDigitalOcean,
    sources: list[Path],
    redis_url: str,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    with DigitalOceanExecutor(TOKEN, "lon1", api_base_url=fake.url) as deployer:
        deployer.deploy_job(1, package(sources, "square"), FaasConfig(timeout_secs=30))
    # No worker is lost here: room for a slow box rather than fast redelivery.
    relaxed = {**FAST_KNOBS, "visibility_timeout_s": 120}
    knobs = "\n".join(f"{name} = {json.dumps(value)}" for name, value in relaxed.items())
    app_file = tmp_path / "app.toml"
    app_file.write_text(
        f'broker_url = "{redis_url}"\n{knobs}\n'
        + dedent(
            f"""
            [faas.jobs.1]
            provider = "digitalocean"
            timeout_secs = 30

            [faas.jobs.1.options]
            token = "env:DO_TEST_TOKEN"
            region = "lon1"
            api_base_url = "{fake.url}"
            """
        )
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}
    env["PYTHONPATH"] = str(ROOT)
    env["DO_TEST_TOKEN"] = TOKEN
    args = ["worker", "--app", str(app_file), "--pool", "threads", "--concurrency", "2"]
    worker = spawn_cli(args, env, tmp_path / "worker.log", ready=WORKER_READY)
    try:
        command = [sys.executable, "-m", "dispatcher", "submit", "--app", str(app_file)]
        command += ["1", "--args-hex", (7).to_bytes(8, "big").hex(), "--wait", "--timeout-s", "60"]
        done = subprocess.run(
            command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
    finally:
        worker.stop()

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == (
        f"ok job=1 ran_on=digitalocean body_hex={(49).to_bytes(16, 'big').hex()}"
    )
    assert fake.invocations_of("blueprint-job-1") == 1
    assert TOKEN not in worker.output()


def test_the_cli_deploys_and_checks_a_job_declared_on_digitalocean(
    fake: FakeDigitalOcean, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mymod.py").write_text(
        "def square(payload):\n    return bytes(b * b % 256 for b in payload)\n"
    )
    app_file = tmp_path / "blueprint.toml"
    app_file.write_text(
        dedent(
            f"""
            [faas.jobs.4]
            provider = "digitalocean"
            memory_mb = 256
            timeout_secs = 60
            [faas.jobs.4.options]
            region = "sgp1"
            api_base_url = "{fake.url}"
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    env = {"DIGITALOCEAN_TOKEN": TOKEN}
    deploy = ["deploy", "4", "--app", str(app_file), "--handler", "mymod:square"]
    deploy += ["--source", str(tmp_path / "mymod.py"), "--memory", "256", "--timeout", "60"]

    deployed = CliRunner().invoke(cli, deploy, env=env)
    health = CliRunner().invoke(cli, ["health", "4", "--app", str(app_file), "--json"], env=env)

    assert deployed.exit_code == 0, deployed.output
    assert health.exit_code == 0, health.output
    assert json.loads(health.stdout) == {"healthy": True, "job_id": 4}
    assert TOKEN not in deployed.output + health.output
    assert any(ns.record["region"] == "sgp1" for ns in fake.namespaces)


def test_the_readmes_digitalocean_example_is_an_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (ROOT / "README.md").read_text()
    (example,) = re.findall(
        r"```toml\n(# blueprint\.toml \(a DigitalOcean job\)\n.*?)```", readme, re.DOTALL
    )
    path = tmp_path / "blueprint.toml"
    path.write_text(example)
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", TOKEN)

    blueprint = load_app(str(path))

    executor = blueprint.registry.get(4)
    assert isinstance(executor, DigitalOceanExecutor)
    assert executor.region == "ams3"
    assert executor.job_config(4) == FaasConfig(memory_mb=256, timeout_secs=60)

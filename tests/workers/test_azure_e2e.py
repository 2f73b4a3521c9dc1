"""Jobs registered on Azure run end to end: runner, Redis, a real worker, the fake ARM and a
real Functions host process running the generated app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher import JobCall, Settings
from providers.packaging import build_azure_package
from tests.providers._azure_fake import FakeAzure
from tests.providers.contract._azure import azure_executor
from tests.workers import azure_app
from tests.workers.conftest import Run, StartWorker

pytestmark = pytest.mark.integration

HANDLERS = """
def reverse(payload):
    return payload[::-1]


def fail(payload):
    raise ValueError("the job failed on purpose")
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeAzure]:
    """The fake, with jobs 7 and 8 deployed through the executor."""
    work_dir = tmp_path_factory.mktemp("azure-e2e")
    source = work_dir / "jobs.py"
    source.write_text(HANDLERS)
    with FakeAzure(work_dir / "platform") as fake, azure_executor(fake) as deployer:
        for job_id, handler in (
            (azure_app.REVERSE_JOB, "reverse"),
            (azure_app.FAILING_JOB, "fail"),
        ):
            package = build_azure_package(f"jobs:{handler}", sources=[source])
            deployer.deploy_job(job_id, package, azure_app.CONFIG)
        yield fake


def test_azure_jobs_run_through_the_runner_a_worker_and_the_functions_host(
    platform: FakeAzure,
    settings: Settings,
    start_worker: StartWorker,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    env = {
        azure_app.ARM_URL_ENV: platform.url,
        azure_app.SUBSCRIPTION_ENV: platform.subscription_id,
        azure_app.TOKEN_ENV: platform.issue_token(),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    worker = start_worker(app="tests.workers.azure_app", extra_env=env)
    blueprint = azure_app.build_app().with_settings(settings)
    calls = [JobCall(azure_app.REVERSE_JOB, b"azure", metadata={"n": n}) for n in range(3)]
    failing = JobCall(azure_app.FAILING_JOB, b"x")

    run = Run(blueprint, [*calls, failing])
    run.finish(timeout_s=120)
    results = {result.call_id: result for result in run.results}

    for call in calls:
        result = results[call.call_id]
        assert result.ok and result.body == b"eruza" and result.ran_on == "azure"
        assert result.metadata == call.metadata
        assert result.metrics is not None and result.metrics.cold_start is not None
    failed = results[failing.call_id]
    assert not failed.ok and failed.error is not None
    assert failed.error.kind == "function_error" and failed.attempts == 1
    app = azure_executor(platform).app_name
    assert platform.invocations(app(azure_app.REVERSE_JOB)) == 3
    assert platform.invocations(app(azure_app.FAILING_JOB)) == 1
    assert platform.key_secret not in worker.output()
    assert platform.token_secret not in worker.output()

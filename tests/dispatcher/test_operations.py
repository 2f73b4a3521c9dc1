"""The operations library without the CLI: packaging by provider, lookups, queues, percentiles."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import redis
from celery import Celery

from dispatcher import Blueprint, NotAFaasJob, ProviderMismatch, Router, Settings, UnknownJob
from dispatcher.cost import compare, percentile, summarise
from dispatcher.keys import EXECUTE_TASK, job_queue
from dispatcher.operations import (
    build_package,
    deploy,
    executor_for,
    faas_config,
    parse_env_pairs,
)
from dispatcher.records import InvocationRecord
from dispatcher.status import queue_lengths, workers_by_queue
from providers.base import FaasConfig, FaasDeployment, FaasExecutor, InvokeReply
from providers.errors import InvalidConfig
from providers.registry import provider_names

HANDLER_SOURCE = Path(__file__).with_name("_ops_handler.py")


class RecordingExecutor(FaasExecutor):
    """An executor under the custom provider's name that keeps what it was asked to deploy."""

    provider_name = "custom"

    def __init__(self) -> None:
        super().__init__()
        self.packages: dict[int, bytes] = {}

    def _invoke(self, job_id: int, payload: bytes) -> InvokeReply:
        raise NotImplementedError

    def _deploy_job(self, job_id: int, package: bytes, config: FaasConfig) -> FaasDeployment:
        self.packages[job_id] = package
        return FaasDeployment(
            f"fn-{job_id}", job_id, self.provider_name, None, config.memory_mb, config.timeout_secs
        )

    def _health_check(self, job_id: int) -> bool:
        return job_id in self.packages

    def _warm(self, job_id: int, instances: int) -> int:
        return instances

    def _get_deployment(self, job_id: int) -> FaasDeployment:
        raise NotImplementedError

    def _undeploy_job(self, job_id: int) -> None:
        self.packages.pop(job_id, None)


def _blueprint(executor: FaasExecutor) -> Blueprint:
    router = Router()
    router.add(0, lambda args: args)
    return Blueprint(router=router).with_faas_executor(5, executor)


def test_a_deploy_config_is_the_jobs_config_with_the_options_given() -> None:
    base = FaasConfig(memory_mb=320, timeout_secs=40, env_vars={"A": "1"}, keep_warm=True)

    config = faas_config(base, timeout_s=9, env_vars={"B": "2"})

    assert config == FaasConfig(
        memory_mb=320, timeout_secs=9, env_vars={"A": "1", "B": "2"}, keep_warm=True
    )
    assert faas_config(base, keep_warm=False).keep_warm is False


def test_deploy_packages_with_the_builder_of_the_executors_provider() -> None:
    executor = RecordingExecutor()
    config = faas_config(memory_mb=256, timeout_s=9, env_vars={"A": "1"}, keep_warm=True)

    deployment = deploy(
        _blueprint(executor), 5, "_ops_handler:reverse", sources=[HANDLER_SOURCE], config=config
    )

    # The custom provider's builder: its bootstrap, the handler core and the source.
    with zipfile.ZipFile(io.BytesIO(executor.packages[5])) as package:
        assert sorted(package.namelist()) == [
            "_blueprint_handler.py",
            "_ops_handler.py",
            "bootstrap",
        ]
        assert "_ops_handler:reverse" in package.read("bootstrap").decode()
    assert (deployment.memory_mb, deployment.timeout_secs) == (256, 9)
    assert executor.job_config(5) == config


def test_deploy_without_a_config_deploys_the_one_the_app_gives_the_job() -> None:
    executor = RecordingExecutor()
    configured = FaasConfig(memory_mb=320, timeout_secs=12)
    executor.configure_job(5, configured)

    deployment = deploy(_blueprint(executor), 5, "_ops_handler:reverse", sources=[HANDLER_SOURCE])

    assert (deployment.memory_mb, deployment.timeout_secs) == (320, 12)
    assert executor.job_config(5) == configured


def test_a_provider_this_installation_does_not_have_is_an_invalid_config() -> None:
    with pytest.raises(
        InvalidConfig, match=rf"unknown provider 'nimbus' \(known: {', '.join(provider_names())}\)"
    ):
        build_package("nimbus", "mod:fn", [HANDLER_SOURCE])


def test_executor_for_refuses_unknown_local_and_mismatched_jobs() -> None:
    executor = RecordingExecutor()
    blueprint = _blueprint(executor)
    assert executor_for(blueprint, 5) is executor
    assert executor_for(blueprint, 5, "custom") is executor
    with pytest.raises(UnknownJob):
        executor_for(blueprint, 6)
    with pytest.raises(NotAFaasJob):
        executor_for(blueprint, 0)
    with pytest.raises(ProviderMismatch) as caught:
        executor_for(blueprint, 5, "gcp")
    assert (caught.value.expected, caught.value.given) == ("custom", "gcp")


def test_env_pairs_split_at_the_first_equals_sign() -> None:
    assert parse_env_pairs(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}


def test_percentiles_are_nearest_rank() -> None:
    samples = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert [percentile(samples, p) for p in (1, 20, 21, 50, 95, 100)] == [1, 1, 2, 3, 5, 5]
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summaries_skip_missing_durations_and_compare_needs_invocations() -> None:
    records = [
        InvocationRecord(ts=0.0, job_id=1, provider="custom", ok=False),
        InvocationRecord(ts=0.0, job_id=1, provider="custom", ok=True, total_ms=12.0),
    ]
    [summary] = summarise(records)
    assert (summary.count, summary.errors, summary.p50_ms, summary.p95_ms) == (2, 1, 12.0, 12.0)
    assert summarise(records[:1])[0].p50_ms is None
    with pytest.raises(ValueError, match="no invocations"):
        compare(records[:1], memory_mb=128)


@pytest.mark.integration
def test_queue_lengths_count_kombus_priority_sub_queues(settings: Settings, redis_url: str) -> None:
    app = Celery("test-operations", set_as_current=False)
    app.conf.update(settings.celery_connection_config())
    try:
        app.send_task(EXECUTE_TASK, args=({},), queue=job_queue(3))
        app.send_task(EXECUTE_TASK, args=({},), queue=job_queue(3), priority=9)
        # kombu keeps a priority above 0 in its own list, under a suffixed key.
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        keys = set(client.keys("blueprint.jobs.*"))
        assert keys == {"blueprint.jobs.3", "blueprint.jobs.3\x06\x169"}

        lengths = queue_lengths(app, [job_queue(3), job_queue(4)])

        assert lengths == {job_queue(3): 2, job_queue(4): 0}
        assert workers_by_queue(app, timeout_s=0.2) == {}
    finally:
        app.close()

"""The executor interface's shared policy and its value objects."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from providers.base import (
    DEFAULT_CONFIG,
    FaasConfig,
    function_name,
)
from providers.errors import (
    ErrorKind,
    FaasError,
    FunctionError,
    InfrastructureError,
    InvalidConfig,
    PayloadTooLarge,
    PermanentFaasError,
    PermanentInfrastructureError,
    Throttled,
    TransientFaasError,
    TransientInfrastructureError,
)
from tests.memory_executor import MemoryExecutor


def test_invoke_with_metrics_times_the_call_and_keeps_the_providers_figures() -> None:
    executor = MemoryExecutor()
    response = executor.invoke_with_metrics(2, b"abc")
    assert response.body == b"cba"
    assert response.metrics.execution_ms == 1.5
    assert response.metrics.cold_start is False
    assert response.metrics.total_ms >= 0
    assert response.metrics.billed_ms is None


def test_a_payload_over_the_cap_is_refused_before_anything_is_sent() -> None:
    executor = MemoryExecutor()
    with pytest.raises(PayloadTooLarge, match="9 bytes"):
        executor.invoke(0, b"x" * 9)
    assert executor.invoked == []


@pytest.mark.parametrize("job_id", [-1, 2**32])
def test_an_out_of_range_job_id_never_reaches_the_provider(job_id: int) -> None:
    executor = MemoryExecutor()
    with pytest.raises(ValueError):
        executor.invoke(job_id, b"")
    assert executor.invoked == []


def test_deploy_records_the_config_that_later_invokes_are_sized_by() -> None:
    executor = MemoryExecutor()
    assert executor.job_config(4) == DEFAULT_CONFIG
    config = FaasConfig(memory_mb=1024, timeout_secs=30)
    executor.deploy_job(4, b"PK-zip", config)
    assert executor.job_config(4) == config
    executor.undeploy_job(4)
    assert executor.job_config(4) == DEFAULT_CONFIG


def test_an_empty_package_is_an_invalid_config() -> None:
    with pytest.raises(InvalidConfig):
        MemoryExecutor().deploy_job(0, b"")


def test_config_defaults_match_the_contract() -> None:
    config = FaasConfig()
    assert (config.memory_mb, config.timeout_secs, config.max_concurrency) == (512, 300, None)
    assert (config.keep_warm, dict(config.env_vars), dict(config.provider_config)) == (
        False,
        {},
        {},
    )


def test_config_repr_hides_env_vars_and_provider_config() -> None:
    config = FaasConfig(env_vars={"API_TOKEN": "hunter2"}, provider_config={"key": "s3cret"})
    assert "hunter2" not in repr(config)
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(
    "fields",
    [
        {"memory_mb": 0},
        {"timeout_secs": 0},
        {"max_concurrency": 0},
        {"env_vars": {"1BAD": "x"}},
        {"unknown": 1},
    ],
)
def test_config_refuses_values_no_provider_can_honour(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        FaasConfig(**fields)  # type: ignore[arg-type]


def test_function_names_follow_one_rule() -> None:
    assert function_name(7) == "blueprint-job-7"
    assert function_name(7, prefix="acme") == "acme-7"


def test_error_families_say_whether_to_retry() -> None:
    assert Throttled("x", retry_after_s=2.0).retryable
    assert isinstance(Throttled("x"), TransientFaasError)
    assert not FunctionError("x").retryable
    assert isinstance(FunctionError("x"), PermanentFaasError)
    assert TransientInfrastructureError("x", status=503).retryable
    assert isinstance(TransientInfrastructureError("x"), InfrastructureError)
    assert not PermanentInfrastructureError("x", status=400).retryable
    assert isinstance(PermanentInfrastructureError("x"), InfrastructureError)


def test_an_infrastructure_error_must_say_its_family() -> None:
    with pytest.raises(TypeError, match="TransientInfrastructureError"):
        InfrastructureError("x", status=500)


def test_every_error_class_is_retryable_exactly_when_it_is_transient() -> None:
    for error_type in _concrete_error_types():
        error = error_type("x")
        assert error.retryable == isinstance(error, TransientFaasError), error_type
        assert error.retryable != isinstance(error, PermanentFaasError), error_type


def test_the_error_classes_name_every_provider_kind_and_share_only_infrastructure() -> None:
    kinds = [error_type.kind for error_type in _concrete_error_types()]
    dispatchers_own = {
        ErrorKind.UNKNOWN_JOB,
        ErrorKind.MALFORMED_CALL,
        ErrorKind.WORKER_FAILURE,
        ErrorKind.PUBLISH_FAILED,
        ErrorKind.CIRCUIT_OPEN,
    }

    assert set(kinds) == set(ErrorKind) - dispatchers_own
    assert sorted(kinds) == sorted([*set(kinds), ErrorKind.INFRASTRUCTURE])  # two families


def test_a_config_error_does_not_quote_its_secrets() -> None:
    # An invalid name makes pydantic report the env_vars field, values included.
    with pytest.raises(ValidationError) as caught:
        FaasConfig(env_vars={"API_TOKEN": "hunter2", "not a name": "x"})
    assert "invalid environment variable name" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def _concrete_error_types() -> set[type[FaasError]]:
    def leaves(cls: type[FaasError]) -> set[type[FaasError]]:
        subs = cls.__subclasses__()
        return {cls} if not subs else {leaf for sub in subs for leaf in leaves(sub)}

    return leaves(FaasError)

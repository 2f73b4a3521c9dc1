"""The executor contract: what every provider's executor does, whatever the platform.

Each test runs once per executor kind (``conftest.py``) and uses its own job id, since a kind's
platform lives for the whole module.
"""

from __future__ import annotations

import logging

import pytest

from providers.base import FaasMetrics
from providers.errors import (
    FaasError,
    FaasTimeout,
    FunctionError,
    InfrastructureError,
    NotDeployed,
    PayloadTooLarge,
    Throttled,
)
from tests.providers.contract._driver import Behaviour, ContractDriver

pytestmark = pytest.mark.integration

PAYLOAD = b"\x00contract\xff"


def _over_the_cap(driver: ContractDriver) -> bytes:
    """A payload whose request is over the provider's cap, however it is encoded."""
    cap = driver.executor.limits.max_request_bytes
    assert cap is not None, "every provider documents a request cap"
    return bytes(cap + 1)


def _raised(driver: ContractDriver, job_id: int, payload: bytes = PAYLOAD) -> FaasError:
    with pytest.raises(FaasError) as caught:
        driver.executor.invoke(job_id, payload)
    return caught.value


def test_a_successful_invoke_returns_the_output_and_the_reported_metrics(
    driver: ContractDriver,
) -> None:
    with driver.function(1, Behaviour.SUCCEED):
        response = driver.executor.invoke_with_metrics(1, PAYLOAD)

    assert response.body == PAYLOAD[::-1]
    assert response.metrics.total_ms > 0
    for name in driver.reported_metrics:
        assert getattr(response.metrics, name) is not None, name
    assert set(driver.reported_metrics) <= set(FaasMetrics.__dataclass_fields__)
    assert driver.invocations_seen(1) == 1


def test_a_function_error_is_raised_after_one_attempt_and_not_retryable(
    driver: ContractDriver,
) -> None:
    with driver.function(2, Behaviour.FAIL):
        error = _raised(driver, 2)

    assert isinstance(error, FunctionError)
    assert error.retryable is False
    assert error.provider == driver.executor.provider_name
    assert driver.invocations_seen(2) == 1


def test_a_throttled_call_is_retryable_and_carries_retry_after(driver: ContractDriver) -> None:
    with driver.function(3, Behaviour.THROTTLE):
        error = _raised(driver, 3)

    assert isinstance(error, Throttled)
    assert error.retryable is True
    assert error.retry_after_s == driver.throttle_retry_after_s


def test_a_platform_5xx_is_a_retryable_infrastructure_error(driver: ContractDriver) -> None:
    with driver.function(4, Behaviour.SERVER_ERROR):
        error = _raised(driver, 4)

    assert isinstance(error, InfrastructureError)
    assert error.retryable is True
    assert error.status is not None and error.status >= 500
    assert driver.invocations_seen(4) == 1


def test_a_function_past_its_timeout_is_a_retryable_timeout(driver: ContractDriver) -> None:
    with driver.function(5, Behaviour.TIME_OUT):
        error = _raised(driver, 5)

    assert isinstance(error, FaasTimeout)
    assert error.retryable is True


def test_a_job_never_deployed_is_not_deployed(driver: ContractDriver) -> None:
    error = _raised(driver, 6)

    assert isinstance(error, NotDeployed)
    assert error.retryable is False


def test_a_payload_over_the_cap_is_refused_before_anything_is_sent(
    driver: ContractDriver,
) -> None:
    with driver.function(7, Behaviour.SUCCEED):
        error = _raised(driver, 7, _over_the_cap(driver))
        assert driver.executor.invoke(7, bytes(16)) == bytes(16)

    assert isinstance(error, PayloadTooLarge)
    assert error.retryable is False
    # The call that fit reached the platform; the one over the cap did not.
    assert driver.invocations_seen(7) == 1


def test_deploy_get_health_warm_and_undeploy_go_through_the_lifecycle(
    driver: ContractDriver,
) -> None:
    executor = driver.executor
    with driver.function(8, Behaviour.SUCCEED) as deployed:
        described = executor.get_deployment(8)
        healthy = executor.health_check(8)
        warmed = executor.warm(8, 1)

    assert deployed.job_id == described.job_id == 8
    assert deployed.function_id == described.function_id
    assert deployed.provider == described.provider == executor.provider_name
    assert healthy is True
    assert warmed >= 1

    executor.undeploy_job(8)
    executor.undeploy_job(8)  # removing what is not there is not an error

    assert executor.health_check(8) is False
    with pytest.raises(NotDeployed):
        executor.get_deployment(8)
    with pytest.raises(NotDeployed):
        executor.invoke(8, PAYLOAD)


def test_secrets_stay_out_of_reprs_errors_and_logs(
    driver: ContractDriver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[FaasError] = []
    with driver.function(9, Behaviour.FAIL):
        errors.append(_raised(driver, 9))
    with driver.function(10, Behaviour.SERVER_ERROR):
        errors.append(_raised(driver, 10))
    errors.append(_raised(driver, 11))  # not deployed
    with driver.function(12, Behaviour.SUCCEED):
        driver.executor.invoke(12, PAYLOAD)
        errors.append(_raised(driver, 12, _over_the_cap(driver)))

    texts = [repr(driver.executor), caplog.text]
    texts += [text for error in errors for text in (str(error), repr(error))]
    assert caplog.records, "the executor logs what it does"
    for secret in driver.secrets:
        for text in texts:
            assert secret not in text

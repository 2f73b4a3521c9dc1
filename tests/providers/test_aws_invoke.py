"""Invoking Lambda functions: metrics from the REPORT line, and every error mapped once.

Runs go through the Lambda front, which runs the real package (``_lambda_platform.py``);
answers no run can give (a throttle with its Retry-After, a service fault, a slow answer)
are scripted there, on the wire, so botocore parses them as it parses Lambda's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from textwrap import dedent
from typing import Any

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError

from providers._lambda_report import parse_report_line
from providers.aws import CONTROL_ATTEMPTS, ERROR_CODES, LIMITS, LambdaExecutor, botocore_config
from providers.base import FaasConfig
from providers.errors import (
    FaasError,
    FaasTimeout,
    FunctionError,
    InvocationFailed,
    NotDeployed,
    PayloadTooLarge,
    SerializationError,
    Throttled,
    TransientFaasError,
    TransientInfrastructureError,
)
from providers.packaging import build_lambda_package
from tests.processes import free_port
from tests.providers._lambda_platform import (
    REGION,
    ROLE_ARN,
    Answer,
    LambdaFront,
    MotoServer,
    local_lambda,
)

pytestmark = pytest.mark.integration

SECRET_KEY = "invoke-secret-key-7f3a"
ENV_SECRET = "env-secret-91c2"
JOBS = dedent(
    """
    import os
    import time
    from pathlib import Path

    def reverse(payload):
        Path(os.environ["RAN_FILE"]).touch()
        return payload[::-1]

    def leak(payload):
        raise PermissionError("the token is " + os.environ["TOKEN"] + " and " + "x" * 1000)

    def divide(payload):
        raise ZeroDivisionError("the job divided by zero")

    def sleepy(payload):
        time.sleep(60)
        return payload
    """
)

# Each code of the table with the status Lambda (or IAM, STS, S3) answers it with.
DOCUMENTED_STATUS = {
    "ResourceNotFoundException": 404,
    "ProvisionedConcurrencyConfigNotFoundException": 404,
    "TooManyRequestsException": 429,
    "ThrottlingException": 400,
    "EC2ThrottledException": 502,
    "RequestTooLargeException": 413,
    "RequestEntityTooLargeException": 413,
    "SerializedRequestEntityTooLargeException": 413,
    "ResourceConflictException": 409,
    "PreconditionFailedException": 412,
    "ResourceNotReadyException": 502,
    "SnapStartNotReadyException": 409,
    "ServiceException": 500,
    "ENILimitReachedException": 502,
    "EC2UnexpectedException": 502,
    "SubnetIPAddressLimitReachedException": 502,
    "EFSIOException": 410,
    "EFSMountConnectivityException": 408,
    "EFSMountTimeoutException": 408,
    "EC2AccessDeniedException": 502,
    "InvalidSubnetIDException": 502,
    "InvalidSecurityGroupIDException": 502,
    "InvalidRuntimeException": 502,
    "InvalidZipFileException": 502,
    "KMSAccessDeniedException": 502,
    "KMSDisabledException": 502,
    "KMSInvalidStateException": 502,
    "KMSNotFoundException": 502,
    "EFSMountFailureException": 403,
    "CodeStorageExceededException": 400,
    "RecursiveInvocationException": 400,
    "InvalidParameterValueException": 400,
    "ValidationException": 400,
    "NoSuchBucket": 404,
    "InvalidRequestContentException": 400,
    "UnsupportedMediaTypeException": 415,
    "AccessDeniedException": 403,
    "AccessDenied": 403,
    "UnrecognizedClientException": 403,
    "InvalidSignatureException": 403,
    "SignatureDoesNotMatch": 403,
    "InvalidClientTokenId": 403,
    "ExpiredTokenException": 403,
    "ExpiredToken": 400,
    "MissingAuthenticationTokenException": 403,
}


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LambdaFront]:
    with local_lambda(tmp_path_factory.mktemp("aws-invoke")) as front:
        yield front


@pytest.fixture(scope="module")
def bare_moto() -> Iterator[MotoServer]:
    """moto's server with no front: its own invoke answers queued bodies, with no log tail."""
    with MotoServer() as moto:
        yield moto


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    source = tmp_path_factory.mktemp("aws-invoke-src") / "jobs.py"
    source.write_text(JOBS)
    names = ("reverse", "leak", "divide", "sleepy")
    return {name: build_lambda_package(f"jobs:{name}", sources=[source]) for name in names}


def executor_at(endpoint_url: str, **options: Any) -> LambdaExecutor:
    session = boto3.Session(
        aws_access_key_id="AKIDINVOKE", aws_secret_access_key=SECRET_KEY, region_name=REGION
    )
    return LambdaExecutor(REGION, ROLE_ARN, endpoint_url=endpoint_url, session=session, **options)


@pytest.fixture
def executor(front: LambdaFront) -> Iterator[LambdaExecutor]:
    with executor_at(front.url) as executor:
        yield executor


@pytest.fixture(scope="module")
def deployed(
    front: LambdaFront, packages: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory
) -> int:
    """Job 1, the reversing function, deployed once for the module's scripted answers."""
    ran = tmp_path_factory.mktemp("ran") / "ran"
    with executor_at(front.url) as executor:
        executor.deploy_job(1, packages["reverse"], FaasConfig(env_vars={"RAN_FILE": str(ran)}))
    return 1


def raised(executor: LambdaExecutor, job_id: int, payload: bytes = b"x") -> FaasError:
    with pytest.raises(FaasError) as caught:
        executor.invoke(job_id, payload)
    return caught.value


def test_metrics_come_from_the_report_line_cold_then_warm(
    front: LambdaFront, executor: LambdaExecutor, packages: dict[str, bytes], tmp_path: Any
) -> None:
    executor.deploy_job(
        2, packages["reverse"], FaasConfig(env_vars={"RAN_FILE": str(tmp_path / "r")})
    )

    cold = executor.invoke_with_metrics(2, b"abc")
    cold_report = parse_report_line(front.last_log["blueprint-job-2"].splitlines()[-1])
    warm = executor.invoke_with_metrics(2, b"abc")
    warm_report = parse_report_line(front.last_log["blueprint-job-2"].splitlines()[-1])

    assert cold.body == warm.body == b"cba"
    assert (cold.metrics.cold_start, warm.metrics.cold_start) == (True, False)
    assert cold_report.init_duration_ms is not None and warm_report.init_duration_ms is None
    for metrics, report in ((cold.metrics, cold_report), (warm.metrics, warm_report)):
        assert metrics.execution_ms == report.duration_ms
        assert metrics.billed_ms == report.billed_duration_ms
        assert metrics.memory_used_mb == report.max_memory_used_mb
        assert metrics.memory_used_mb is not None and metrics.memory_used_mb > 0


def test_without_a_report_line_the_entry_points_self_report_is_used(
    packages: dict[str, bytes], bare_moto: MotoServer
) -> None:
    # moto's own invoke (its non-docker backend) answers with a queued body and no log tail.
    with executor_at(bare_moto.url) as executor:
        executor.deploy_job(3, packages["reverse"], FaasConfig())
        bare_moto.queue_results(
            [
                json.dumps(
                    {
                        "job_id": 3,
                        "result": [1, 2],
                        "success": True,
                        "fresh": True,
                        "handler_ms": 1.5,
                    }
                )
            ]
        )

        response = executor.invoke_with_metrics(3, b"\x02\x01")

    assert response.body == b"\x01\x02"
    assert response.metrics.cold_start is True
    assert response.metrics.execution_ms == 1.5
    assert (response.metrics.billed_ms, response.metrics.memory_used_mb) == (None, None)


def test_a_failure_reply_of_a_function_in_the_crates_format_is_a_function_error(
    packages: dict[str, bytes], bare_moto: MotoServer
) -> None:
    with executor_at(bare_moto.url) as executor:
        executor.deploy_job(4, packages["reverse"], FaasConfig())
        bare_moto.queue_results([json.dumps({"result": [], "success": False, "error": "boom"})])
        bare_moto.queue_results(['"not a reply object"'])

        failed = raised(executor, 4)
        malformed = raised(executor, 4)

    assert isinstance(failed, FunctionError)
    assert failed.message == "job function failed: boom"
    assert isinstance(malformed, SerializationError)


def test_a_reply_over_lambdas_response_cap_is_payload_too_large(
    packages: dict[str, bytes], bare_moto: MotoServer
) -> None:
    # moto's own invoke turns an answer over 6,000,000 bytes into Function.ResponseSizeTooLarge.
    with executor_at(bare_moto.url) as executor:
        executor.deploy_job(11, packages["reverse"], FaasConfig())
        bare_moto.queue_results(["x" * 6_100_000])

        error = raised(executor, 11)

    assert isinstance(error, PayloadTooLarge)
    assert "Function.ResponseSizeTooLarge" in error.message


def test_a_job_that_raises_is_a_function_error_with_its_type_and_message_after_one_attempt(
    front: LambdaFront, executor: LambdaExecutor, packages: dict[str, bytes]
) -> None:
    executor.deploy_job(5, packages["divide"], FaasConfig())

    error = raised(executor, 5)

    assert isinstance(error, FunctionError)
    assert error.message == "job function failed: ZeroDivisionError: the job divided by zero"
    assert error.retryable is False
    assert front.count("Invoke", "blueprint-job-5") == 1


def test_a_function_error_is_redacted_and_truncated(
    executor: LambdaExecutor, packages: dict[str, bytes]
) -> None:
    executor.deploy_job(6, packages["leak"], FaasConfig(env_vars={"TOKEN": ENV_SECRET}))

    error = raised(executor, 6)

    assert error.message.startswith("job function failed: PermissionError: the token is [redacted]")
    assert ENV_SECRET not in str(error)
    assert len(error.message) <= 300


def test_a_function_past_its_timeout_is_a_retryable_timeout(
    executor: LambdaExecutor, packages: dict[str, bytes]
) -> None:
    executor.deploy_job(7, packages["sleepy"], FaasConfig(timeout_secs=1))

    error = raised(executor, 7)

    assert isinstance(error, FaasTimeout)
    assert "Sandbox.Timedout" in error.message
    assert error.retryable is True


def test_a_throttle_carries_retry_after_and_the_reason(
    front: LambdaFront, executor: LambdaExecutor, deployed: int
) -> None:
    seen = front.count("Invoke", "blueprint-job-1")
    front.script(
        "Invoke",
        "blueprint-job-1",
        Answer(
            429,
            "TooManyRequestsException",
            "Rate Exceeded.",
            headers={"Retry-After": "7"},
            extra={"Reason": "ConcurrentInvocationLimitExceeded"},
        ),
    )

    error = raised(executor, deployed)

    assert isinstance(error, Throttled)
    assert error.retry_after_s == 7.0
    assert error.status == 429
    assert "ConcurrentInvocationLimitExceeded" in error.message
    assert front.count("Invoke", "blueprint-job-1") == seen + 1  # botocore did not retry it


def test_a_service_fault_is_retryable_and_attempted_once(
    front: LambdaFront, executor: LambdaExecutor, deployed: int
) -> None:
    seen = front.count("Invoke", "blueprint-job-1")
    front.script("Invoke", "blueprint-job-1", Answer(500, "ServiceException", "internal"))

    error = raised(executor, deployed)

    assert isinstance(error, TransientInfrastructureError)
    assert front.count("Invoke", "blueprint-job-1") == seen + 1


def test_an_invoke_past_the_read_timeout_is_a_timeout_and_is_not_sent_again(
    front: LambdaFront, deployed: int
) -> None:
    # The job's timeout is 1 s and the margin 0.5 s: an answer 5 s late is past the read timeout.
    executor = executor_at(front.url, invoke_margin_s=0.5)
    executor.configure_job(deployed, FaasConfig(timeout_secs=1))
    seen = front.count("Invoke", "blueprint-job-1")
    front.script("Invoke", "blueprint-job-1", Answer(delay_s=5.0))

    error = raised(executor, deployed)

    assert isinstance(error, FaasTimeout)
    assert isinstance(error.__cause__, ReadTimeoutError)
    assert front.count("Invoke", "blueprint-job-1") == seen + 1


def test_a_refused_connection_is_a_retryable_invocation_failure() -> None:
    executor = executor_at(f"http://127.0.0.1:{free_port()}")

    error = raised(executor, 1)

    assert isinstance(error, InvocationFailed)
    assert SECRET_KEY not in str(error)


def test_a_job_never_deployed_is_not_deployed(executor: LambdaExecutor) -> None:
    assert isinstance(raised(executor, 8), NotDeployed)


def test_a_request_over_6_mb_is_refused_before_anything_is_sent(
    front: LambdaFront, executor: LambdaExecutor, deployed: int
) -> None:
    seen = front.count("Invoke", "blueprint-job-1")
    assert LIMITS.max_request_bytes == 6 * 1024 * 1024

    error = raised(executor, deployed, bytes(3 * 1024 * 1024))  # "0," per byte: 6 MB + envelope

    assert isinstance(error, PayloadTooLarge)
    assert front.count("Invoke", "blueprint-job-1") == seen


def test_a_megabyte_payload_round_trips(executor: LambdaExecutor, deployed: int) -> None:
    payload = bytes(range(256)) * 4096

    assert executor.invoke(deployed, payload) == payload[::-1]


def test_warm_starts_that_many_environments_without_running_the_job(
    front: LambdaFront, executor: LambdaExecutor, packages: dict[str, bytes], tmp_path: Any
) -> None:
    ran = tmp_path / "ran"
    executor.deploy_job(9, packages["reverse"], FaasConfig(env_vars={"RAN_FILE": str(ran)}))

    warmed = executor.warm(9, 3)

    assert warmed == 3
    assert front.count("Invoke", "blueprint-job-9") == 3
    assert not ran.exists()
    with pytest.raises(NotDeployed):
        executor.warm(10, 2)


def test_the_error_table_is_covered_here() -> None:
    assert set(DOCUMENTED_STATUS) == set(ERROR_CODES)


@pytest.mark.parametrize(("code", "status"), sorted(DOCUMENTED_STATUS.items()))
def test_every_code_in_the_table_raises_its_kind_with_an_honest_family(
    front: LambdaFront, executor: LambdaExecutor, deployed: int, code: str, status: int
) -> None:
    front.script("Invoke", "blueprint-job-1", Answer(status, code, f"the {code} message"))

    error = raised(executor, deployed)

    assert type(error) is ERROR_CODES[code]
    assert isinstance(error, TransientFaasError) == error.retryable
    assert error.status == status
    assert code in error.message and f"the {code} message" in error.message
    assert SECRET_KEY not in error.message


def test_an_unknown_code_is_read_by_its_status(
    front: LambdaFront, executor: LambdaExecutor, deployed: int
) -> None:
    front.script("Invoke", "blueprint-job-1", Answer(503, "SomethingNewException", "later"))
    front.script("Invoke", "blueprint-job-1", Answer(418, "TeapotException", "no"))

    unavailable = raised(executor, deployed)
    teapot = raised(executor, deployed)

    assert (unavailable.retryable, teapot.retryable) == (True, False)


def test_invoke_clients_make_one_attempt_and_control_clients_use_standard_retries() -> None:
    invoke = botocore_config(invoke=True, read_timeout_s=310.0)
    control = botocore_config(invoke=False, read_timeout_s=30.0)

    assert invoke.retries == {"mode": "standard", "total_max_attempts": 1}
    assert invoke.read_timeout == 310.0
    assert control.retries == {"mode": "standard", "total_max_attempts": CONTROL_ATTEMPTS}
    assert control.read_timeout == 30.0

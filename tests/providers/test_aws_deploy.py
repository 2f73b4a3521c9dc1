"""The Lambda deployment lifecycle against moto's server (through the Lambda front).

moto answers every control-plane call; the front runs the deployed package when it is
invoked, so a redeploy's new code and environment are seen by a real run, and it answers what
moto cannot: a function still Pending or an update still InProgress, provisioned concurrency,
and scripted AWS errors.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from textwrap import dedent
from typing import Any

import boto3
import pytest

from providers.aws import DIRECT_UPLOAD_MAX_BYTES, PROVISIONED_ALIAS, LambdaExecutor
from providers.base import FaasConfig
from providers.errors import (
    AuthError,
    FaasError,
    InvalidConfig,
    NotDeployed,
    PermanentInfrastructureError,
    TransientInfrastructureError,
)
from providers.packaging import build_lambda_package
from tests.providers._lambda_platform import REGION, ROLE_ARN, Answer, LambdaFront, local_lambda

pytestmark = pytest.mark.integration

JOBS = dedent(
    """
    import os

    def mode(payload):
        return os.environ.get("JOB_MODE", "unset").encode() + b":" + payload

    def shout(payload):
        return payload.upper()
    """
)
SMALL = FaasConfig(memory_mb=256, timeout_secs=10)


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LambdaFront]:
    with local_lambda(tmp_path_factory.mktemp("aws-deploy")) as front:
        yield front


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    source = tmp_path_factory.mktemp("aws-deploy-src") / "jobs.py"
    source.write_text(JOBS)
    return {
        name: build_lambda_package(f"jobs:{name}", sources=[source]) for name in ("mode", "shout")
    }


def executor_for(front: LambdaFront, **options: Any) -> LambdaExecutor:
    session = boto3.Session(
        aws_access_key_id="AKIDDEPLOY", aws_secret_access_key="deploy-secret", region_name=REGION
    )
    return LambdaExecutor(REGION, ROLE_ARN, endpoint_url=front.url, session=session, **options)


@pytest.fixture
def executor(front: LambdaFront) -> Iterator[LambdaExecutor]:
    with executor_for(front) as executor:
        yield executor


def test_a_first_deploy_creates_the_function_with_the_config(
    front: LambdaFront, executor: LambdaExecutor, packages: dict[str, bytes]
) -> None:
    config = FaasConfig(memory_mb=320, timeout_secs=12, env_vars={"JOB_MODE": "first"})

    deployment = executor.deploy_job(1, packages["mode"], config)

    described = front.moto.client("lambda").get_function_configuration(
        FunctionName="blueprint-job-1"
    )
    assert (described["MemorySize"], described["Timeout"]) == (320, 12)
    assert described["Handler"] == "blueprint_lambda.handler"
    assert described["Runtime"] == "python3.12"
    assert described["Architectures"] == ["x86_64"]
    assert described["Environment"]["Variables"] == {"JOB_MODE": "first"}
    assert deployment.function_id == "blueprint-job-1"
    assert deployment.endpoint == described["FunctionArn"]
    assert deployment.package_size_bytes == len(packages["mode"])
    assert (deployment.memory_mb, deployment.timeout_secs, deployment.status) == (320, 12, "Active")
    assert front.count("CreateFunction", "") >= 1
    assert executor.invoke(1, b"x") == b"first:x"


def test_a_redeploy_updates_code_then_configuration_and_the_new_env_is_used(
    front: LambdaFront, executor: LambdaExecutor, packages: dict[str, bytes]
) -> None:
    executor.deploy_job(2, packages["mode"], FaasConfig(env_vars={"JOB_MODE": "old"}))
    assert executor.invoke(2, b"a") == b"old:a"
    creates = front.count("CreateFunction", "")

    executor.deploy_job(
        2, packages["mode"], FaasConfig(memory_mb=1024, env_vars={"JOB_MODE": "new"})
    )
    after_env = executor.invoke(2, b"b")
    executor.deploy_job(2, packages["shout"], FaasConfig(memory_mb=1024))

    assert after_env == b"new:b"
    assert executor.invoke(2, b"c") == b"C"
    assert front.count("CreateFunction", "") == creates  # updates, never a second create
    assert front.count("UpdateFunctionCode", "blueprint-job-2") == 2
    assert front.count("UpdateFunctionConfiguration", "blueprint-job-2") == 2
    assert executor.get_deployment(2).memory_mb == 1024


def test_a_deploy_waits_for_a_pending_function_to_become_active(
    front: LambdaFront, executor: LambdaExecutor, packages: dict[str, bytes]
) -> None:
    front.hold_state("blueprint-job-3", "State", "Pending", polls=2)

    executor.deploy_job(3, packages["shout"], SMALL)

    # The two Pending answers, the Active one, and the update waiter's own look.
    assert front.count("GetFunction", "blueprint-job-3") >= 4
    assert executor.invoke(3, b"ok") == b"OK"


def test_each_update_step_waits_for_the_one_before(
    front: LambdaFront, executor: LambdaExecutor, packages: dict[str, bytes]
) -> None:
    executor.deploy_job(4, packages["shout"], SMALL)
    before = front.count("GetFunction", "blueprint-job-4")
    front.hold_state("blueprint-job-4", "LastUpdateStatus", "InProgress", polls=2)

    executor.deploy_job(4, packages["mode"], SMALL)

    # GetFunction (create or update?), two InProgress answers, then Successful twice.
    assert front.count("GetFunction", "blueprint-job-4") - before >= 5
    assert executor.invoke(4, b"y") == b"unset:y"


def test_a_function_still_pending_at_the_deploy_deadline_is_a_retryable_error(
    front: LambdaFront, packages: dict[str, bytes]
) -> None:
    executor = executor_for(front, deploy_timeout_s=1)
    # The create's waiter gets one look (a 1 s deadline at 1 s per look), and sees Pending.
    front.hold_state("blueprint-job-21", "State", "Pending", polls=1)

    with pytest.raises(TransientInfrastructureError) as caught:
        executor.deploy_job(21, packages["shout"], SMALL)

    assert "State=Pending" in caught.value.message
    assert caught.value.retryable is True


def test_a_failed_update_is_a_permanent_error_naming_the_reason(
    front: LambdaFront, executor: LambdaExecutor, packages: dict[str, bytes]
) -> None:
    executor.deploy_job(5, packages["shout"], SMALL)
    # The look that picks "update", then the waiter's look after the code update.
    front.hold_state("blueprint-job-5", "LastUpdateStatus", "Failed", polls=2)

    with pytest.raises(PermanentInfrastructureError) as caught:
        executor.deploy_job(5, packages["mode"], SMALL)

    assert "LastUpdateStatus=Failed" in caught.value.message
    assert front.count("UpdateFunctionConfiguration", "blueprint-job-5") == 0


def test_a_function_whose_creation_failed_is_deleted_and_created_again(
    front: LambdaFront, executor: LambdaExecutor, packages: dict[str, bytes]
) -> None:
    executor.deploy_job(20, packages["shout"], SMALL)
    creates = front.count("CreateFunction", "")
    front.hold_state("blueprint-job-20", "State", "Failed", polls=1)

    executor.deploy_job(20, packages["mode"], SMALL)

    assert front.count("DeleteFunction", "blueprint-job-20") == 1
    assert front.count("CreateFunction", "") == creates + 1
    assert executor.invoke(20, b"z") == b"unset:z"


def test_an_update_conflict_is_retryable_not_a_create(
    front: LambdaFront, executor: LambdaExecutor, packages: dict[str, bytes]
) -> None:
    executor.deploy_job(6, packages["shout"], SMALL)
    creates = front.count("CreateFunction", "")
    conflict = Answer(409, "ResourceConflictException", "An update is in progress")
    front.script("UpdateFunctionCode", "blueprint-job-6", conflict)

    with pytest.raises(TransientInfrastructureError) as caught:
        executor.deploy_job(6, packages["mode"], SMALL)

    assert caught.value.retryable is True
    assert caught.value.status == 409
    assert front.count("CreateFunction", "") == creates


def test_a_get_function_error_other_than_not_found_is_reported_not_created(
    front: LambdaFront, executor: LambdaExecutor, packages: dict[str, bytes]
) -> None:
    creates = front.count("CreateFunction", "")
    front.script("GetFunction", "blueprint-job-7", Answer(403, "AccessDeniedException", "no"))

    with pytest.raises(AuthError):
        executor.deploy_job(7, packages["shout"], SMALL)

    assert front.count("CreateFunction", "") == creates


def test_control_plane_5xx_are_retried_by_botocore_standard_mode(
    front: LambdaFront, executor: LambdaExecutor, packages: dict[str, bytes]
) -> None:
    fault = Answer(500, "ServiceException", "try again")
    front.script("GetFunction", "blueprint-job-8", fault, fault)

    executor.deploy_job(8, packages["shout"], SMALL)

    assert front.count("GetFunction", "blueprint-job-8") >= 3
    assert executor.health_check(8) is True


def test_max_concurrency_reserves_concurrency_and_dropping_it_removes_it(
    front: LambdaFront, executor: LambdaExecutor, packages: dict[str, bytes]
) -> None:
    moto = front.moto.client("lambda")
    executor.deploy_job(9, packages["shout"], FaasConfig(max_concurrency=7))
    reserved = moto.get_function_concurrency(FunctionName="blueprint-job-9")

    executor.deploy_job(9, packages["shout"], FaasConfig())

    assert reserved["ReservedConcurrentExecutions"] == 7
    assert "ReservedConcurrentExecutions" not in moto.get_function_concurrency(
        FunctionName="blueprint-job-9"
    )


def test_keep_warm_with_provisioned_concurrency_invokes_a_provisioned_alias(
    front: LambdaFront, executor: LambdaExecutor, packages: dict[str, bytes]
) -> None:
    warm = FaasConfig(keep_warm=True, provider_config={"provisioned_concurrency": 2})
    moto = front.moto.client("lambda")

    executor.deploy_job(10, packages["shout"], warm)
    alias = moto.get_alias(FunctionName="blueprint-job-10", Name=PROVISIONED_ALIAS)
    provisioned = front.provisioned("blueprint-job-10")
    answer = executor.invoke(10, b"warm")

    assert alias["FunctionVersion"] != "$LATEST"
    assert provisioned is not None
    assert provisioned["Qualifier"] == PROVISIONED_ALIAS
    assert provisioned["Status"] == "READY"
    assert provisioned["RequestedProvisionedConcurrentExecutions"] == 2
    assert answer == b"WARM"

    executor.deploy_job(10, packages["shout"], FaasConfig(keep_warm=True))

    assert front.provisioned("blueprint-job-10") is None
    with pytest.raises(moto.exceptions.ResourceNotFoundException):
        moto.get_alias(FunctionName="blueprint-job-10", Name=PROVISIONED_ALIAS)
    assert executor.invoke(10, b"latest") == b"LATEST"


def test_a_package_over_50_mb_goes_through_the_s3_bucket(
    front: LambdaFront, packages: dict[str, bytes]
) -> None:
    front.moto.client("s3").create_bucket(Bucket="blueprint-code")
    large = _padded(packages["shout"], DIRECT_UPLOAD_MAX_BYTES + 1024)
    executor = executor_for(front, s3_bucket="blueprint-code")

    deployment = executor.deploy_job(11, large, SMALL)

    objects = front.moto.client("s3").list_objects_v2(Bucket="blueprint-code")["Contents"]
    assert [entry["Size"] for entry in objects] == [len(large)]
    assert objects[0]["Key"].startswith("blueprint-faas/blueprint-job-11/")
    assert deployment.package_size_bytes == len(large)
    assert executor.invoke(11, b"big") == b"BIG"


def test_a_package_over_50_mb_without_a_bucket_is_refused_before_anything_is_sent(
    front: LambdaFront, executor: LambdaExecutor, packages: dict[str, bytes]
) -> None:
    large = _padded(packages["shout"], DIRECT_UPLOAD_MAX_BYTES + 1024)

    with pytest.raises(InvalidConfig, match="set the s3_bucket option"):
        executor.deploy_job(12, large, SMALL)

    assert front.count("GetFunction", "blueprint-job-12") == 0


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (FaasConfig(memory_mb=100), "memory_mb=100 is below the minimum of 128 MB"),
        (FaasConfig(memory_mb=10_241), "memory_mb=10241 is above the maximum of 10240 MB"),
        (FaasConfig(timeout_secs=901), "timeout_secs=901 is above the maximum of 900 s"),
        (FaasConfig(env_vars={"BIG": "x" * 5000}), "over the limit of 4096 bytes"),
        (FaasConfig(max_concurrency=901), "max_concurrency=901 is above the limit of 900"),
        (FaasConfig(provider_config={"region": "x"}), "refused: \\['region'\\]"),
        (
            FaasConfig(provider_config={"provisioned_concurrency": 2}),
            "provisioned_concurrency needs keep_warm = true",
        ),
    ],
)
def test_a_config_lambda_cannot_honour_is_refused_before_anything_is_sent(
    front: LambdaFront,
    executor: LambdaExecutor,
    packages: dict[str, bytes],
    config: FaasConfig,
    problem: str,
) -> None:
    with pytest.raises(InvalidConfig, match=problem):
        executor.deploy_job(13, packages["shout"], config)

    assert front.count("GetFunction", "blueprint-job-13") == 0


def test_health_follows_the_function_state(
    front: LambdaFront, executor: LambdaExecutor, packages: dict[str, bytes]
) -> None:
    assert executor.health_check(14) is False  # missing
    executor.deploy_job(14, packages["shout"], SMALL)

    assert executor.health_check(14) is True


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("State", "Pending"),
        ("State", "Failed"),
        ("State", "Inactive"),
        ("LastUpdateStatus", "Failed"),
    ],
)
def test_a_function_that_cannot_run_is_unhealthy_not_an_error(
    front: LambdaFront,
    executor: LambdaExecutor,
    packages: dict[str, bytes],
    field_name: str,
    value: str,
) -> None:
    executor.deploy_job(19, packages["shout"], SMALL)
    front.hold_state("blueprint-job-19", field_name, value, polls=1)

    assert executor.health_check(19) is False
    assert executor.health_check(19) is True


def test_health_is_an_error_only_when_lambda_cannot_be_asked(
    front: LambdaFront, executor: LambdaExecutor, packages: dict[str, bytes]
) -> None:
    executor.deploy_job(15, packages["shout"], SMALL)
    fault = Answer(500, "ServiceException", "down")

    with (
        front.always("GetFunctionConfiguration", "blueprint-job-15", fault),
        pytest.raises(TransientInfrastructureError),
    ):
        executor.health_check(15)


def test_get_deployment_reports_what_lambda_holds(
    executor: LambdaExecutor, packages: dict[str, bytes]
) -> None:
    executor.deploy_job(16, packages["shout"], FaasConfig(memory_mb=640, timeout_secs=33))

    deployment = executor.get_deployment(16)

    assert (deployment.memory_mb, deployment.timeout_secs) == (640, 33)
    assert deployment.status == "Active"
    assert deployment.deployed_at is not None
    assert deployment.package_size_bytes == len(packages["shout"])
    assert deployment.endpoint is not None and deployment.endpoint.endswith(":blueprint-job-16")


def test_undeploy_removes_the_function_and_its_provisioned_alias(
    front: LambdaFront, executor: LambdaExecutor, packages: dict[str, bytes]
) -> None:
    warm = FaasConfig(
        keep_warm=True, max_concurrency=3, provider_config={"provisioned_concurrency": 1}
    )
    executor.deploy_job(17, packages["shout"], warm)

    executor.undeploy_job(17)
    executor.undeploy_job(17)  # missing is not an error

    assert front.provisioned("blueprint-job-17") is None
    with pytest.raises(NotDeployed):
        executor.get_deployment(17)
    assert executor.health_check(17) is False


def test_every_deploy_error_is_a_faas_error_with_an_honest_family(
    front: LambdaFront, executor: LambdaExecutor, packages: dict[str, bytes]
) -> None:
    front.script(
        "GetFunction", "blueprint-job-18", Answer(400, "InvalidParameterValueException", "bad")
    )

    with pytest.raises(FaasError) as caught:
        executor.deploy_job(18, packages["shout"], SMALL)

    assert isinstance(caught.value, InvalidConfig)
    assert caught.value.retryable is False


def _padded(package: bytes, size: int) -> bytes:
    """``package`` with an incompressible file added, so the zip is ``size`` bytes or more."""
    buffer = io.BytesIO(package)
    with zipfile.ZipFile(buffer, "a", zipfile.ZIP_STORED) as archive:
        archive.writestr("padding.bin", os.urandom(size - len(package)))
    return buffer.getvalue()

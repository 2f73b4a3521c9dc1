"""The gcp executor's invoke path against real functions served by functions-framework.

Each function is deployed through the executor on the local platform
(``tests/providers/_gcp_platform.py``), which serves the generated source zip with a real
functions-framework process and checks ID tokens as Cloud Run does. Tokens come from
google-auth, with a service-account file whose token URI is the platform's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from textwrap import dedent

import pytest

from providers.base import FaasConfig
from providers.errors import AuthError, FunctionError, NotDeployed
from providers.gcp import CloudFunctionExecutor
from providers.packaging import build_gcp_package
from tests.providers._gcp_platform import GcpPlatform
from tests.providers.contract._gcp import platform_executor

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = dedent(
    """
    import os


    def double(payload):
        return bytes(value * 2 % 256 for value in payload)


    def divide(payload):
        return bytes([1 // len(payload)])


    def record(payload):
        with open(os.environ["RECORD_FILE"], "ab") as runs:
            runs.write(b"run\\n")
        return payload
    """
)
SMALL = FaasConfig(memory_mb=256, timeout_secs=30)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcpPlatform]:
    with GcpPlatform(tmp_path_factory.mktemp("gcp-invoke")) as platform:
        yield platform


@pytest.fixture(scope="module")
def package_for(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], bytes]:
    source = tmp_path_factory.mktemp("src") / "handlers.py"
    source.write_text(HANDLERS)
    return lambda function: build_gcp_package(f"handlers:{function}", sources=[source])


@pytest.fixture
def executor(platform: GcpPlatform) -> Iterator[CloudFunctionExecutor]:
    with platform_executor(platform) as executor:
        yield executor


def test_the_demo_square_runs_in_the_generated_package(
    executor: CloudFunctionExecutor,
) -> None:
    package = build_gcp_package("_squaring:square", sources=[ROOT / "dispatcher" / "_squaring.py"])
    executor.deploy_job(1, package, SMALL)

    assert executor.invoke(1, (12).to_bytes(8, "big")) == (144).to_bytes(16, "big")


def test_the_first_call_of_an_instance_is_cold_and_the_next_is_not(
    executor: CloudFunctionExecutor, package_for: Callable[[str], bytes]
) -> None:
    executor.deploy_job(2, package_for("double"), SMALL)

    first = executor.invoke_with_metrics(2, b"\x01\x02")
    second = executor.invoke_with_metrics(2, b"\x03")

    assert (first.body, second.body) == (b"\x02\x04", b"\x06")
    assert (first.metrics.cold_start, second.metrics.cold_start) == (True, False)
    assert first.metrics.execution_ms is not None and first.metrics.execution_ms >= 0


def test_a_failing_handler_is_a_function_error_with_its_message(
    executor: CloudFunctionExecutor, package_for: Callable[[str], bytes], platform: GcpPlatform
) -> None:
    executor.deploy_job(3, package_for("divide"), SMALL)

    with pytest.raises(FunctionError) as caught:
        executor.invoke(3, b"")

    assert "ZeroDivisionError: integer division or modulo by zero" in caught.value.message
    assert caught.value.status == 500
    assert platform.invocations("blueprint-job-3") == 1
    # The same function still answers what it can.
    assert executor.invoke(3, b"\x00") == b"\x01"


def test_a_warm_up_is_answered_without_running_the_job(
    executor: CloudFunctionExecutor, package_for: Callable[[str], bytes], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    executor.deploy_job(4, package_for("record"), FaasConfig(env_vars={"RECORD_FILE": str(runs)}))

    warmed = executor.warm(4, 3)
    assert not runs.exists()
    metrics = executor.invoke_with_metrics(4, b"x").metrics

    assert warmed == 3
    assert runs.read_bytes() == b"run\n"
    # The warm-ups were the instance's first requests, so the job's call is not cold.
    assert metrics.cold_start is False


def test_invocations_make_no_control_plane_call_and_fetch_one_id_token(
    platform: GcpPlatform, package_for: Callable[[str], bytes]
) -> None:
    with platform_executor(platform) as deployer:
        deployer.deploy_job(5, package_for("double"), SMALL)
    with platform_executor(platform) as executor:
        executor.invoke(5, b"\x01")  # learns the URI (one GET) and fetches the ID token
        calls, grants = len(platform.api_calls), platform.token_grants["id"]
        results: list[bytes] = []
        threads = [
            threading.Thread(target=lambda: results.append(executor.invoke(5, b"\x02")))
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    assert results == [b"\x04"] * 8
    assert len(platform.api_calls) == calls
    assert platform.token_grants["id"] == grants


def test_a_refused_id_token_is_fetched_once_more_for_many_threads(
    platform: GcpPlatform, executor: CloudFunctionExecutor, package_for: Callable[[str], bytes]
) -> None:
    executor.deploy_job(6, package_for("double"), SMALL)
    executor.invoke(6, b"\x01")
    grants = platform.token_grants["id"]

    platform.revoke_tokens()
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(executor.invoke(6, b"\x05")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert results == [b"\x0a"] * 8
    assert platform.token_grants["id"] == grants + 1


def test_an_id_token_near_its_expiry_is_fetched_anew(
    tmp_path: Path, package_for: Callable[[str], bytes]
) -> None:
    # Tokens that live 60 s are always within the 300 s refresh margin: each call fetches one.
    with (
        GcpPlatform(tmp_path, id_token_lifetime_s=60) as short_lived,
        platform_executor(short_lived) as executor,
    ):
        executor.deploy_job(7, package_for("double"), SMALL)
        for _ in range(3):
            executor.invoke(7, b"\x01")

        assert short_lived.token_grants["id"] == 3


def test_a_caller_without_the_invoker_role_gets_an_auth_error_saying_so(
    platform: GcpPlatform, executor: CloudFunctionExecutor, package_for: Callable[[str], bytes]
) -> None:
    executor.deploy_job(8, package_for("double"), SMALL)
    grants = platform.token_grants["id"]

    with platform.denying("blueprint-job-8"), pytest.raises(AuthError) as caught:
        executor.invoke(8, b"\x01")

    assert caught.value.status == 403
    assert "roles/run.invoker" in caught.value.message
    # A missing role is not a stale token: nothing was fetched again.
    assert platform.token_grants["id"] == grants + 1


def test_a_function_removed_elsewhere_is_not_deployed_after_one_look(
    platform: GcpPlatform, package_for: Callable[[str], bytes]
) -> None:
    with platform_executor(platform) as owner, platform_executor(platform) as caller:
        owner.deploy_job(9, package_for("double"), SMALL)
        assert caller.invoke(9, b"\x01") == b"\x02"
        owner.undeploy_job(9)
        calls = len(platform.api_calls)

        with pytest.raises(NotDeployed):
            caller.invoke(9, b"\x01")

    # The 404 from the stale URI led to one GET of the function, which is gone.
    assert [call[0] for call in platform.api_calls[calls:]] == ["GET"]


def test_a_redeploy_serves_the_new_source_at_the_same_uri(
    executor: CloudFunctionExecutor, package_for: Callable[[str], bytes], platform: GcpPlatform
) -> None:
    first = executor.deploy_job(10, package_for("double"), SMALL)
    assert executor.invoke(10, b"\x03") == b"\x06"

    second = executor.deploy_job(10, package_for("divide"), SMALL)

    assert first.endpoint == second.endpoint
    assert executor.invoke(10, b"\x00") == b"\x01"
    patches = [call for call in platform.api_calls if call[0] == "PATCH"]
    assert patches and patches[-1][1].endswith("/functions/blueprint-job-10")

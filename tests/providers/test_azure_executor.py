"""The azure executor against a local fake of ARM and Kudu, with a real host process per app.

Control plane: what deploy creates and how, ARM's async operations (pending, then succeeded
or failed), 409 "in progress" and 429 waited out with Retry-After, other errors reported with
ARM's code, name availability, token refresh. Invocation: keys fetched once and refetched
once on 401, no ARM call per invocation. Undeploy removes the job's resources only.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from dispatcher import load_app
from providers._poll import PollPolicy
from providers.azure import ARM_SCOPE, AzureFunctionExecutor, AzureOptions
from providers.base import FaasConfig
from providers.errors import (
    AuthError,
    FaasTimeout,
    InvalidConfig,
    InvocationFailed,
    NotDeployed,
    PermanentInfrastructureError,
    Throttled,
    TransientInfrastructureError,
)
from providers.packaging import build_azure_package
from providers.registry import create_executor
from tests.providers._azure_fake import FakeAzure, FakeCredential
from tests.providers.contract._azure import azure_executor

pytestmark = pytest.mark.integration

SITES = r"/providers/Microsoft\.Web/sites/[^/]+$"
LISTKEYS = r"/functions/blueprint/listkeys$"
CONFIG = FaasConfig(memory_mb=512, timeout_secs=30, env_vars={"MODE": "prod"})


class RecordingClock:
    """The poll helper's clock: records each wait asked for, and waits at most 10 ms of it."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self._offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self._offset

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        real = min(seconds, 0.01)
        time.sleep(real)
        self._offset += seconds - real


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[FakeAzure]:
    with FakeAzure(tmp_path / "platform") as fake:
        yield fake


@pytest.fixture
def package(tmp_path: Path) -> bytes:
    source = tmp_path / "jobs.py"
    source.write_text("def reverse(payload):\n    return payload[::-1]\n")
    return build_azure_package("jobs:reverse", sources=[source])


@pytest.fixture
def clock() -> RecordingClock:
    return RecordingClock()


@pytest.fixture
def executor(platform: FakeAzure, clock: RecordingClock) -> Iterator[AzureFunctionExecutor]:
    with azure_executor(platform, clock=clock) as built:
        yield built


# -- deploy ------------------------------------------------------------------------------


def test_deploy_creates_the_group_storage_container_plan_and_app_and_publishes(
    platform: FakeAzure, executor: AzureFunctionExecutor, package: bytes
) -> None:
    deployment = executor.deploy_job(1, package, CONFIG)

    app = executor.app_name(1)
    assert set(platform.groups) == {executor.resource_group.lower()}
    assert list(platform.storage) == [executor._storage_account]
    assert platform.containers == {(executor._storage_account, f"app-package-{app}")}
    assert list(platform.plans) == [f"{app}-plan"]
    assert platform.plans[f"{app}-plan"]["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    site = platform.site(app)
    config = site.body["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["scaleAndConcurrency"] == {"instanceMemoryMB": 512, "maximumInstanceCount": 100}
    assert config["deployment"]["storage"]["value"] == (
        f"https://{executor._storage_account}.blob.core.windows.net/app-package-{app}"
    )
    assert site.settings["MODE"] == "prod"
    assert site.settings["AzureFunctionsJobHost__functionTimeout"] == "00:00:30"
    assert platform.storage_key in site.settings["AzureWebJobsStorage"]
    assert platform.count("POST", "scm:/api/publish") == 1
    # The host name is ARM's, not one built from the app's name.
    assert deployment.endpoint == f"http://{site.host}/api/blueprint"
    assert (deployment.memory_mb, deployment.timeout_secs, deployment.status) == (
        512,
        30,
        "Running",
    )
    assert executor.invoke(1, b"abc") == b"cba"


def test_memory_is_rounded_up_to_a_flex_size_and_scale_follows_the_config(
    platform: FakeAzure, executor: AzureFunctionExecutor, package: bytes
) -> None:
    config = FaasConfig(
        memory_mb=1000,
        timeout_secs=60,
        max_concurrency=7,
        keep_warm=True,
        provider_config={"http_per_instance_concurrency": 4},
    )
    deployment = executor.deploy_job(2, package, config)

    scale = platform.site(executor.app_name(2)).body["properties"]["functionAppConfig"][
        "scaleAndConcurrency"
    ]
    assert scale == {
        "instanceMemoryMB": 2048,
        "maximumInstanceCount": 7,
        "alwaysReady": [{"name": "http", "instanceCount": 1}],
        "triggers": {"http": {"perInstanceConcurrency": 4}},
    }
    assert deployment.memory_mb == 2048


def test_a_timeout_over_the_230_s_http_cap_is_refused_before_any_request(
    platform: FakeAzure, executor: AzureFunctionExecutor, package: bytes
) -> None:
    with pytest.raises(InvalidConfig, match="timeout_secs=231 is above the 230 s cut"):
        executor.deploy_job(3, package, FaasConfig(timeout_secs=231))

    assert platform.requests == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (FaasConfig(memory_mb=8192, timeout_secs=60), "memory_mb=8192 is above the maximum"),
        (FaasConfig(timeout_secs=60, provider_config={"vnet": "x"}), "unknown provider_config"),
        (FaasConfig(timeout_secs=60, env_vars={"AzureWebJobsStorage": "x"}), "may not set"),
        (
            FaasConfig(timeout_secs=60, provider_config={"always_ready_instances": -1}),
            "must be a non-negative integer",
        ),
    ],
)
def test_a_config_azure_cannot_honour_is_refused(
    platform: FakeAzure,
    executor: AzureFunctionExecutor,
    package: bytes,
    config: FaasConfig,
    message: str,
) -> None:
    with pytest.raises(InvalidConfig, match=message):
        executor.deploy_job(3, package, config)

    assert platform.count("PUT", SITES) == 0


def test_async_operations_are_polled_until_they_succeed(
    platform: FakeAzure, executor: AzureFunctionExecutor, package: bytes, clock: RecordingClock
) -> None:
    platform.pending_polls = 3

    executor.deploy_job(4, package, CONFIG)

    # Plan and site (Azure-AsyncOperation) and storage (Location): each polled 4 times.
    assert platform.count("GET", r"^/operations/") == 3 * 4
    assert clock.waits, "the polls waited between steps"


def test_a_resource_still_provisioning_is_read_again_until_it_has(
    platform: FakeAzure, executor: AzureFunctionExecutor, package: bytes
) -> None:
    storage = r"/storageAccounts/[^/]+$"
    platform.script("GET", storage, 404, {"error": {"code": "ResourceNotFound"}})
    creating = {"name": "s", "properties": {"provisioningState": "ResolvingDNS"}}
    platform.script("GET", storage, 200, creating, times=2)

    executor.deploy_job(4, package, CONFIG)

    # The check, two reads still provisioning, one that has (then the executor goes on).
    assert platform.count("GET", storage) == 4


def test_a_resource_whose_provisioning_failed_is_reported(
    platform: FakeAzure, executor: AzureFunctionExecutor, package: bytes
) -> None:
    storage = r"/storageAccounts/[^/]+$"
    platform.script("GET", storage, 404, {"error": {"code": "ResourceNotFound"}})
    platform.script("GET", storage, 200, {"properties": {"provisioningState": "Failed"}})

    with pytest.raises(PermanentInfrastructureError, match="provisioning failed"):
        executor.deploy_job(4, package, CONFIG)


def test_a_failed_async_operation_is_reported_with_arms_code_and_message(
    platform: FakeAzure, executor: AzureFunctionExecutor, package: bytes
) -> None:
    failed = {
        "status": "Failed",
        "error": {"code": "SubscriptionIsOverQuotaForSku", "message": "quota of 0 instances"},
    }
    platform.script("GET", r"^/operations/", 200, failed, times=10)

    with pytest.raises(PermanentInfrastructureError) as caught:
        executor.deploy_job(5, package, CONFIG)

    assert "[SubscriptionIsOverQuotaForSku] quota of 0 instances" in str(caught.value)
    assert caught.value.retryable is False


def test_arm_409_in_progress_and_429_are_waited_out_with_retry_after(
    platform: FakeAzure, executor: AzureFunctionExecutor, package: bytes, clock: RecordingClock
) -> None:
    busy = {"error": {"code": "AnotherOperationInProgress", "message": "busy"}}
    platform.script("PUT", SITES, 409, busy, headers={"Retry-After": "7"})
    platform.script(
        "PUT",
        SITES,
        429,
        {"error": {"code": "TooManyRequests"}},
        headers={"Retry-After": "11", "x-ms-ratelimit-remaining-subscription-writes": "0"},
    )

    executor.deploy_job(6, package, CONFIG)

    assert platform.count("PUT", SITES) == 3
    assert 7 in clock.waits and 11 in clock.waits
    assert executor.invoke(6, b"ok") == b"ko"


def test_arm_busy_past_the_deadline_is_a_retryable_timeout(
    platform: FakeAzure, package: bytes, clock: RecordingClock
) -> None:
    platform.script(
        "PUT",
        r"/resource[gG]roups/[^/]+$",
        429,
        {"error": {"code": "TooManyRequests"}},
        headers={"Retry-After": "30"},
        times=100,
    )
    executor = azure_executor(platform, clock=clock, poll_policy=PollPolicy(timeout_s=60))

    with pytest.raises(FaasTimeout, match="to be accepted"):
        executor.deploy_job(7, package, CONFIG)


@pytest.mark.parametrize(
    ("status", "code", "error_type"),
    [
        (400, "InvalidRequestContent", InvalidConfig),
        (403, "AuthorizationFailed", AuthError),
        (409, "StorageAccountAlreadyTaken", InvalidConfig),
        (500, "InternalServerError", TransientInfrastructureError),
        (503, "ServiceUnavailable", Throttled),
    ],
)
def test_other_arm_errors_are_raised_at_once_with_arms_code(
    platform: FakeAzure,
    executor: AzureFunctionExecutor,
    package: bytes,
    status: int,
    code: str,
    error_type: type[Exception],
) -> None:
    platform.script(
        "PUT",
        r"/storageAccounts/[^/]+$",
        status,
        {"error": {"code": code, "message": "ARM says no"}},
    )

    with pytest.raises(error_type) as caught:
        executor.deploy_job(8, package, CONFIG)

    assert f"[{code}] ARM says no" in str(caught.value)
    assert platform.count("PUT", r"/storageAccounts/[^/]+$") == 1
    assert platform.storage_key not in str(caught.value)


def test_a_taken_app_name_is_refused_before_anything_is_created_for_the_app(
    platform: FakeAzure, executor: AzureFunctionExecutor, package: bytes
) -> None:
    platform.taken_names.add(executor.app_name(9))

    with pytest.raises(InvalidConfig, match="is taken"):
        executor.deploy_job(9, package, CONFIG)

    assert platform.count("PUT", SITES) == 0
    assert platform.plans == {}


def test_a_failed_deployment_is_reported(
    platform: FakeAzure, executor: AzureFunctionExecutor, package: bytes
) -> None:
    failed = {"id": "d1", "status": 3, "complete": True, "status_text": "Oryx build failed"}
    platform.script("GET", r"^scm:/api/deployments/latest$", 200, failed)

    with pytest.raises(PermanentInfrastructureError, match="the deployment failed: Oryx build"):
        executor.deploy_job(10, package, CONFIG)


def test_an_expired_arm_token_is_replaced_once(
    platform: FakeAzure, package: bytes, clock: RecordingClock
) -> None:
    credential = FakeCredential(platform)
    executor = azure_executor(platform, credential=credential, clock=clock)
    executor.deploy_job(11, package, CONFIG)
    asked = len(credential.scopes)
    platform.revoke_tokens()

    assert executor.get_deployment(11).memory_mb == 512

    assert len(credential.scopes) == asked + 1
    assert set(credential.scopes) == {ARM_SCOPE}


def test_redeploying_a_job_updates_its_own_app_and_leaves_the_others(
    platform: FakeAzure, executor: AzureFunctionExecutor, package: bytes
) -> None:
    executor.deploy_job(12, package, CONFIG)
    executor.deploy_job(13, package, CONFIG)
    executor.deploy_job(12, package, FaasConfig(memory_mb=4096, timeout_secs=90))

    assert executor.get_deployment(12).memory_mb == 4096
    assert executor.get_deployment(12).timeout_secs == 90
    assert executor.get_deployment(13).memory_mb == 512
    assert executor.invoke(13, b"13") == b"31"
    # Names are checked once, when the app does not exist yet.
    assert platform.count("POST", "checknameavailability") == 2


# -- invoke ------------------------------------------------------------------------------


def test_the_key_is_fetched_once_and_no_arm_call_is_made_per_invocation(
    platform: FakeAzure, executor: AzureFunctionExecutor, package: bytes
) -> None:
    platform.keys_hidden_after_publish = 2  # absent right after the deploy: asked again
    executor.deploy_job(14, package, CONFIG)
    arm_before = len([r for r in platform.requests if not r[1].startswith("scm:")])

    for _ in range(5):
        assert executor.invoke(14, b"xy") == b"yx"

    arm_calls = [r for r in platform.requests if not r[1].startswith("scm:")][arm_before:]
    assert [path.rsplit("/", 3)[-3:] for _, path in arm_calls] == [
        ["functions", "blueprint", "listkeys"]
    ] * 3


def test_a_refused_key_is_fetched_again_once(
    platform: FakeAzure, executor: AzureFunctionExecutor, package: bytes
) -> None:
    executor.deploy_job(15, package, CONFIG)
    executor.invoke(15, b"a")
    platform.rotate_key(executor.app_name(15))

    assert executor.invoke(15, b"ab") == b"ba"

    assert platform.count("POST", LISTKEYS) == 3  # hidden once, first fetch, refetch
    assert platform.invocations(executor.app_name(15)) == 3  # a, refused ab, ab


def test_a_key_refused_twice_is_an_auth_error(
    platform: FakeAzure, executor: AzureFunctionExecutor, package: bytes
) -> None:
    executor.deploy_job(16, package, CONFIG)
    platform.script("POST", LISTKEYS, 200, {"default": "a-wrong-key"}, times=5)

    with pytest.raises(AuthError):
        executor.invoke(16, b"a")


def test_an_app_removed_behind_the_executors_back_is_not_deployed(
    platform: FakeAzure, executor: AzureFunctionExecutor, package: bytes
) -> None:
    executor.deploy_job(23, package, CONFIG)
    executor.invoke(23, b"a")
    azure_executor(platform).undeploy_job(23)

    with pytest.raises((NotDeployed, InvocationFailed)):
        executor.invoke(23, b"a")


def test_threads_share_one_key_fetch(
    platform: FakeAzure, executor: AzureFunctionExecutor, package: bytes
) -> None:
    platform.keys_hidden_after_publish = 0
    executor.deploy_job(17, package, CONFIG)
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(executor.invoke(17, b"12")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert results == [b"21"] * 8
    assert platform.count("POST", LISTKEYS) == 1


def test_a_worker_that_did_not_deploy_reads_the_host_from_arm_once(
    platform: FakeAzure, executor: AzureFunctionExecutor, package: bytes
) -> None:
    executor.deploy_job(18, package, CONFIG)
    site = rf"/sites/{executor.app_name(18)}$"
    reads_before = platform.count("GET", site)
    other = azure_executor(platform)

    assert other.invoke(18, b"1") == b"1"
    assert other.invoke(18, b"12") == b"21"

    assert platform.count("GET", site) == reads_before + 1


def test_no_secret_reaches_a_log_line_or_the_executors_repr(
    platform: FakeAzure,
    executor: AzureFunctionExecutor,
    package: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    executor.deploy_job(24, package, FaasConfig(timeout_secs=30, env_vars={"TOKEN": "env-s3cret"}))
    executor.invoke(24, b"a")
    platform.rotate_key(executor.app_name(24))
    executor.invoke(24, b"b")
    executor.get_deployment(24)

    texts = [caplog.text, repr(executor), repr(executor._arm_http), repr(executor._calls)]
    for secret in (platform.storage_key, platform.key_secret, platform.token_secret, "env-s3cret"):
        assert all(secret not in text for text in texts), secret
    assert caplog.records


# -- health, warm, undeploy -------------------------------------------------------------


def test_health_warm_and_get_deployment_read_azure(
    platform: FakeAzure, executor: AzureFunctionExecutor, package: bytes
) -> None:
    assert executor.health_check(19) is False
    executor.deploy_job(19, package, CONFIG)
    app = executor.app_name(19)

    assert executor.health_check(19) is True
    assert executor.warm(19, 3) == 3
    # What Azure says, not what was asked: change it behind the executor's back.
    platform.site(app).body["properties"]["functionAppConfig"]["scaleAndConcurrency"][
        "instanceMemoryMB"
    ] = 4096
    platform.site(app).settings["AzureFunctionsJobHost__functionTimeout"] = "00:02:00"
    platform.site(app).body["properties"]["state"] = "Stopped"

    described = executor.get_deployment(19)
    assert (described.memory_mb, described.timeout_secs, described.status) == (
        4096,
        120,
        "Stopped",
    )
    assert executor.health_check(19) is False


def test_undeploy_removes_the_jobs_app_plan_and_container_and_nothing_else(
    platform: FakeAzure, executor: AzureFunctionExecutor, package: bytes
) -> None:
    executor.deploy_job(20, package, CONFIG)
    executor.deploy_job(21, package, CONFIG)

    executor.undeploy_job(20)
    executor.undeploy_job(20)

    kept = executor.app_name(21)
    assert list(platform.sites) == [kept]
    assert list(platform.plans) == [f"{kept}-plan"]
    assert platform.containers == {(executor._storage_account, f"app-package-{kept}")}
    assert platform.groups and platform.storage
    with pytest.raises(NotDeployed):
        executor.invoke(20, b"x")
    assert executor.invoke(21, b"xy") == b"yx"


def test_a_plan_that_still_holds_an_app_is_kept(
    platform: FakeAzure, executor: AzureFunctionExecutor, package: bytes
) -> None:
    executor.deploy_job(22, package, CONFIG)
    plan = f"{executor.app_name(22)}-plan"
    platform.script(
        "GET",
        rf"/serverfarms/{plan}$",
        200,
        {"id": plan, "name": plan, "properties": {"numberOfSites": 1}},
    )

    executor.undeploy_job(22)

    assert plan in platform.plans


# -- names and options -------------------------------------------------------------------


def test_app_names_differ_between_users_and_fit_azures_rules() -> None:
    a = AzureFunctionExecutor("sub-a", "eastus", credential=None)
    b = AzureFunctionExecutor("sub-b", "eastus")
    c = AzureFunctionExecutor("sub-a", "eastus", resource_group="other")
    longest = AzureFunctionExecutor("sub-a", "eastus", app_prefix="abcdefghijkl")

    assert len({a.app_name(1), b.app_name(1), c.app_name(1)}) == 3
    assert a.app_name(1) != a.app_name(2)
    name = longest.app_name(2**32 - 1)
    assert len(name) <= 32
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*[a-z0-9]", name)
    assert re.fullmatch(r"[a-z0-9]{3,24}", longest._storage_account)


def test_the_executor_is_built_from_settings_file_options(platform: FakeAzure) -> None:
    executor = create_executor(
        "azure",
        {
            "subscription_id": platform.subscription_id,
            "region": "westeurope",
            "resource_group": "jobs-rg",
            "app_prefix": "acme",
            "arm_base_url": platform.url,
            "site_scheme": "http",
            "remote_build": True,
            "limits": {"max_request_bytes": 1024},
        },
    )

    assert isinstance(executor, AzureFunctionExecutor)
    assert executor.region == "westeurope"
    assert executor.resource_group == "jobs-rg"
    assert executor.app_name(5).startswith("acme-5-")
    assert executor.limits.max_request_bytes == 1024
    assert executor.limits.max_sync_timeout_secs == 230
    assert "acme" in repr(executor)


@pytest.mark.parametrize(
    "bad",
    [
        {"app_prefix": "Has-Caps"},
        {"app_prefix": "waytoolongprefix"},
        {"region": "East US"},
        {"storage_account": "no_underscores"},
        {"site_scheme": "ftp"},
        {"surprise": 1},
    ],
)
def test_bad_options_are_refused_by_field(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as caught:
        AzureOptions.model_validate({"subscription_id": "s", "region": "eastus", **bad})

    assert next(iter(bad)) in str(caught.value)


def test_constructing_an_executor_does_no_network_io() -> None:
    executor = AzureFunctionExecutor("sub", "eastus", arm_base_url="http://127.0.0.1:1")

    assert executor.app_name(1).startswith("blueprint-1-")
    executor.close()


def test_the_readmes_azure_settings_file_is_an_app(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (example,) = re.findall(r"```toml\n(# blueprint\.toml \(Azure jobs\)\n.*?)```", readme, re.S)
    path = tmp_path / "blueprint.toml"
    path.write_text(example)

    blueprint = load_app(str(path))

    executor = blueprint.registry.get(1)
    assert isinstance(executor, AzureFunctionExecutor)
    assert (executor.region, executor.resource_group) == ("eastus", "blueprint-jobs")
    config = executor.job_config(1)
    assert (config.memory_mb, config.timeout_secs) == (2048, 120)

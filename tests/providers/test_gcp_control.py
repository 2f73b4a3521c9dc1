"""The gcp executor's control plane against respx routes replaying the documented v2 wire.

Shapes follow the Cloud Functions v2 REST reference: ``generateUploadUrl`` answers
``{uploadUrl, storageSource}``, writes answer an Operation (``done``, then ``error`` as a
``google.rpc.Status`` or ``response`` as the Function), errors are
``{"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from pydantic import ValidationError

from providers._auth import Credential
from providers._poll import PollPolicy
from providers.base import FaasConfig
from providers.errors import (
    AuthError,
    FaasError,
    FaasTimeout,
    FunctionError,
    InvalidConfig,
    NotDeployed,
    PermanentInfrastructureError,
    SerializationError,
    Throttled,
    TransientFaasError,
    TransientInfrastructureError,
)
from providers.gcp import RPC_CODE_ERRORS, CloudFunctionExecutor, GcpOptions
from providers.registry import create_executor

API = "https://cloudfunctions.googleapis.com/v2"
PARENT = "projects/blueprint-test/locations/europe-west1"
NAME = f"{PARENT}/functions/blueprint-job-3"
UPLOAD_URL = "https://storage.googleapis.com/gcf-v2-uploads/src.zip?X-Goog-Signature=s3cr3tsig"
STORAGE_SOURCE = {"bucket": "gcf-v2-uploads", "object": "src.zip", "generation": "1712"}
URI = "https://blueprint-job-3-abc123-ew.a.run.app"
PACKAGE = b"PK\x05\x06" + bytes(18)
FAST_POLLS = PollPolicy(timeout_s=30.0, first_delay_s=0.001, max_delay_s=0.01)


class CountingTokens:
    """Tokens numbered by fetch, so a test sees which one a request carried."""

    def __init__(self) -> None:
        self.access = 0
        self.id = 0
        self.audiences: list[str] = []

    def access_token(self) -> Credential:
        self.access += 1
        return f"access-token-{self.access}", None

    def id_token(self, audience: str) -> Credential:
        self.id += 1
        self.audiences.append(audience)
        return f"id-token-{self.id}", None


class FakeClock:
    """Time that moves only when the poll waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def tokens() -> CountingTokens:
    return CountingTokens()


@pytest.fixture
def executor(tokens: CountingTokens) -> Iterator[CloudFunctionExecutor]:
    with CloudFunctionExecutor(
        "blueprint-test", "europe-west1", credentials=tokens, poll_policy=FAST_POLLS
    ) as executor:
        yield executor


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield router


def function(state: str = "ACTIVE", memory: str = "1024Mi", **service: Any) -> dict[str, Any]:
    return {
        "name": NAME,
        "state": state,
        "environment": "GEN_2",
        # The 1st gen style URL: not where a 2nd gen function is invoked.
        "url": "https://europe-west1-blueprint-test.cloudfunctions.net/blueprint-job-3",
        "serviceConfig": {"uri": URI, "availableMemory": memory, "timeoutSeconds": 120, **service},
        "updateTime": "2026-03-01T12:30:00.250Z",
    }


def operation(number: int, *, done: bool, error: tuple[int, str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"{PARENT}/operations/operation-{number}",
        "metadata": {
            "@type": "type.googleapis.com/google.cloud.functions.v2.OperationMetadata",
            "stages": [{"name": "BUILD", "state": "COMPLETE" if done else "IN_PROGRESS"}],
        },
        "done": done,
    }
    if done and error is not None:
        body["error"] = {"code": error[0], "message": error[1]}
    elif done:
        body["response"] = {"@type": "type.googleapis.com/google.cloud.functions.v2.Function"}
        body["response"].update(function())
    return body


def google_error(status: int, name: str, message: str, **headers: str) -> httpx.Response:
    body = {"error": {"code": status, "message": message, "status": name}}
    return httpx.Response(status, json=body, headers=headers)


def route_upload(api: respx.MockRouter) -> tuple[respx.Route, respx.Route]:
    generate = api.post(f"{API}/{PARENT}/functions:generateUploadUrl").respond(
        json={"uploadUrl": UPLOAD_URL, "storageSource": STORAGE_SOURCE}
    )
    put = api.put(UPLOAD_URL).respond(200)
    return generate, put


def route_operation(api: respx.MockRouter, number: int, *answers: httpx.Response) -> respx.Route:
    return api.get(f"{API}/{PARENT}/operations/operation-{number}").mock(side_effect=answers)


KEEP_WARM = FaasConfig(
    memory_mb=1024, timeout_secs=120, env_vars={"MODE": "prod"}, max_concurrency=5, keep_warm=True
)


def test_a_deploy_uploads_the_zip_creates_the_function_and_polls_until_done(
    executor: CloudFunctionExecutor, api: respx.MockRouter
) -> None:
    generate, put = route_upload(api)
    create = api.post(f"{API}/{PARENT}/functions").respond(json=operation(1, done=False))
    poll = route_operation(
        api,
        1,
        httpx.Response(200, json=operation(1, done=False)),
        httpx.Response(200, json=operation(1, done=True)),
    )

    deployment = executor.deploy_job(3, PACKAGE, KEEP_WARM)

    assert json.loads(generate.calls.last.request.content) == {"environment": "GEN_2"}
    assert generate.calls.last.request.headers["authorization"] == "Bearer access-token-1"
    upload = put.calls.last.request
    assert upload.content == PACKAGE
    assert upload.headers["content-type"] == "application/zip"
    assert "authorization" not in upload.headers
    created = create.calls.last.request
    assert created.url.params["functionId"] == "blueprint-job-3"
    assert json.loads(created.content) == {
        "name": NAME,
        "environment": "GEN_2",
        "labels": {"blueprint-faas-job": "3"},
        "buildConfig": {
            "runtime": "python312",
            "entryPoint": "blueprint_entry",
            "source": {"storageSource": STORAGE_SOURCE},
        },
        "serviceConfig": {
            "availableMemory": "1024Mi",
            "timeoutSeconds": 120,
            "environmentVariables": {"MODE": "prod"},
            "maxInstanceCount": 5,
            "minInstanceCount": 1,
            "maxInstanceRequestConcurrency": 1,
            "allTrafficOnLatestRevision": True,
        },
    }
    assert poll.call_count == 2
    assert (deployment.function_id, deployment.endpoint, deployment.status) == (
        "blueprint-job-3",
        URI,
        "ACTIVE",
    )
    assert (deployment.memory_mb, deployment.timeout_secs) == (1024, 120)
    assert deployment.package_size_bytes == len(PACKAGE)


def test_a_job_without_max_concurrency_or_keep_warm_resets_both_to_gcps_defaults(
    executor: CloudFunctionExecutor, api: respx.MockRouter
) -> None:
    route_upload(api)
    create = api.post(f"{API}/{PARENT}/functions").respond(json=operation(1, done=True))

    executor.deploy_job(3, PACKAGE, FaasConfig())

    service = json.loads(create.calls.last.request.content)["serviceConfig"]
    assert (service["maxInstanceCount"], service["minInstanceCount"]) == (100, 0)
    assert service["availableMemory"] == "512Mi"


@pytest.mark.parametrize(
    "refusal",
    [
        pytest.param(
            httpx.Response(200, json=operation(1, done=True, error=(6, "already exists"))),
            id="inside-the-operation",
        ),
        pytest.param(google_error(409, "ALREADY_EXISTS", "already exists"), id="http-409"),
    ],
)
def test_an_existing_function_is_patched_with_exactly_the_fields_set(
    executor: CloudFunctionExecutor, api: respx.MockRouter, refusal: httpx.Response
) -> None:
    route_upload(api)
    create = api.post(f"{API}/{PARENT}/functions").mock(return_value=refusal)
    patch = api.patch(f"{API}/{NAME}").respond(json=operation(2, done=True))

    executor.deploy_job(3, PACKAGE, KEEP_WARM)

    patched = patch.calls.last.request
    assert patched.url.params["updateMask"].split(",") == [
        "labels",
        "buildConfig.runtime",
        "buildConfig.entryPoint",
        "buildConfig.source",
        "serviceConfig.availableMemory",
        "serviceConfig.timeoutSeconds",
        "serviceConfig.environmentVariables",
        "serviceConfig.maxInstanceCount",
        "serviceConfig.minInstanceCount",
        "serviceConfig.maxInstanceRequestConcurrency",
        "serviceConfig.allTrafficOnLatestRevision",
    ]
    assert json.loads(patched.content) == json.loads(create.calls.last.request.content)


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        (3, InvalidConfig),
        (7, AuthError),
        (9, PermanentInfrastructureError),
        (8, Throttled),
        (14, TransientInfrastructureError),
    ],
)
def test_an_operation_error_is_raised_as_its_kind_with_its_message(
    executor: CloudFunctionExecutor,
    api: respx.MockRouter,
    code: int,
    error_type: type[FaasError],
) -> None:
    route_upload(api)
    api.post(f"{API}/{PARENT}/functions").respond(json=operation(1, done=False))
    route_operation(api, 1, httpx.Response(200, json=operation(1, done=True, error=(code, "bad"))))

    with pytest.raises(error_type) as caught:
        executor.deploy_job(3, PACKAGE)

    name = RPC_CODE_ERRORS[code][0]
    assert caught.value.message == (
        f"the creation of function blueprint-job-3 failed: [{name}] bad"
    )


def test_an_operation_still_running_at_the_deadline_is_a_timeout(
    tokens: CountingTokens, api: respx.MockRouter
) -> None:
    executor = CloudFunctionExecutor(
        "blueprint-test",
        "europe-west1",
        credentials=tokens,
        poll_policy=PollPolicy(timeout_s=60.0, first_delay_s=1.0, max_delay_s=10.0),
        clock=FakeClock(),
    )
    route_upload(api)
    api.post(f"{API}/{PARENT}/functions").respond(json=operation(1, done=False))
    api.get(f"{API}/{PARENT}/operations/operation-1").respond(json=operation(1, done=False))

    with pytest.raises(FaasTimeout) as caught:
        executor.deploy_job(3, PACKAGE)

    assert "the creation of function blueprint-job-3" in caught.value.message
    assert "last seen: BUILD IN_PROGRESS" in caught.value.message


def test_a_poll_refused_for_load_is_polled_again(
    executor: CloudFunctionExecutor, api: respx.MockRouter
) -> None:
    route_upload(api)
    api.post(f"{API}/{PARENT}/functions").respond(json=operation(1, done=False))
    poll = route_operation(
        api,
        1,
        google_error(503, "UNAVAILABLE", "try again", **{"Retry-After": "0"}),
        google_error(429, "RESOURCE_EXHAUSTED", "slow down"),
        httpx.Response(200, json=operation(1, done=True)),
    )

    assert executor.deploy_job(3, PACKAGE).endpoint == URI
    assert poll.call_count == 3


def test_a_throttled_control_plane_call_is_retryable_with_retry_after(
    executor: CloudFunctionExecutor, api: respx.MockRouter
) -> None:
    api.post(f"{API}/{PARENT}/functions:generateUploadUrl").mock(
        return_value=google_error(
            429, "RESOURCE_EXHAUSTED", "Quota exceeded", **{"Retry-After": "7"}
        )
    )

    with pytest.raises(Throttled) as caught:
        executor.deploy_job(3, PACKAGE)

    assert caught.value.retry_after_s == 7.0
    assert "[RESOURCE_EXHAUSTED] Quota exceeded" in caught.value.message


def test_a_control_plane_5xx_is_a_retryable_infrastructure_error(
    executor: CloudFunctionExecutor, api: respx.MockRouter
) -> None:
    api.post(f"{API}/{PARENT}/functions:generateUploadUrl").mock(
        return_value=google_error(500, "INTERNAL", "backend error")
    )

    with pytest.raises(TransientInfrastructureError) as caught:
        executor.deploy_job(3, PACKAGE)

    assert caught.value.status == 500


def test_a_refused_upload_stops_the_deploy_and_never_shows_the_signature(
    executor: CloudFunctionExecutor, api: respx.MockRouter
) -> None:
    api.post(f"{API}/{PARENT}/functions:generateUploadUrl").respond(
        json={"uploadUrl": UPLOAD_URL, "storageSource": STORAGE_SOURCE}
    )
    api.put(UPLOAD_URL).respond(
        403, content=b"<Error><Code>SignatureDoesNotMatch</Code><Sig>s3cr3tsig</Sig></Error>"
    )
    create = api.post(f"{API}/{PARENT}/functions")

    with pytest.raises(PermanentInfrastructureError) as caught:
        executor.deploy_job(3, PACKAGE)

    assert not create.called
    assert caught.value.status == 403
    assert "the signed upload URL refused the source" in caught.value.message
    assert "s3cr3tsig" not in caught.value.message


def test_an_upload_url_reply_without_its_fields_is_a_serialization_error(
    executor: CloudFunctionExecutor, api: respx.MockRouter
) -> None:
    api.post(f"{API}/{PARENT}/functions:generateUploadUrl").respond(json={"uploadUrl": UPLOAD_URL})

    with pytest.raises(SerializationError, match="'storageSource' is missing"):
        executor.deploy_job(3, PACKAGE)


def test_a_refused_access_token_is_fetched_once_more_and_the_call_sent_again(
    executor: CloudFunctionExecutor, api: respx.MockRouter, tokens: CountingTokens
) -> None:
    get = api.get(f"{API}/{NAME}").mock(
        side_effect=[
            google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
            httpx.Response(200, json=function()),
        ]
    )

    assert executor.health_check(3) is True
    assert tokens.access == 2
    assert [call.request.headers["authorization"] for call in get.calls] == [
        "Bearer access-token-1",
        "Bearer access-token-2",
    ]


@pytest.mark.parametrize(
    ("memory", "memory_mb"),
    [
        ("1Gi", 1024),
        ("512Mi", 512),
        ("2Gi", 2048),
        ("256M", 244),
        ("1G", 954),
        ("131072k", 125),
        ("536870912", 512),
        ("0.5Gi", 512),
    ],
)
def test_memory_is_read_in_every_unit_gcp_writes(
    executor: CloudFunctionExecutor, api: respx.MockRouter, memory: str, memory_mb: int
) -> None:
    api.get(f"{API}/{NAME}").respond(json=function(memory=memory))

    described = executor.get_deployment(3)

    assert described.memory_mb == memory_mb
    assert (described.timeout_secs, described.endpoint) == (120, URI)
    assert described.deployed_at is not None and described.deployed_at.year == 2026


def test_a_memory_in_an_unknown_unit_is_a_serialization_error(
    executor: CloudFunctionExecutor, api: respx.MockRouter
) -> None:
    api.get(f"{API}/{NAME}").respond(json=function(memory="1 gigabyte"))

    with pytest.raises(SerializationError, match="availableMemory"):
        executor.get_deployment(3)


@pytest.mark.parametrize(
    ("state", "healthy"),
    [("ACTIVE", True), ("DEPLOYING", False), ("FAILED", False), ("UNKNOWN", False), (None, False)],
)
def test_health_is_the_functions_state(
    executor: CloudFunctionExecutor, api: respx.MockRouter, state: str | None, healthy: bool
) -> None:
    body = function()
    if state is None:
        del body["state"]
    else:
        body["state"] = state
    api.get(f"{API}/{NAME}").respond(json=body)

    assert executor.health_check(3) is healthy


def test_a_missing_function_is_unhealthy_and_not_deployed(
    executor: CloudFunctionExecutor, api: respx.MockRouter
) -> None:
    api.get(f"{API}/{NAME}").mock(return_value=google_error(404, "NOT_FOUND", "not found"))

    assert executor.health_check(3) is False
    with pytest.raises(NotDeployed):
        executor.get_deployment(3)
    with pytest.raises(NotDeployed):
        executor.invoke(3, b"x")


@pytest.mark.parametrize(
    "answers",
    [
        pytest.param([httpx.Response(200, json=operation(4, done=True))], id="deleted"),
        pytest.param(
            [httpx.Response(200, json=operation(4, done=True, error=(5, "gone")))],
            id="gone-meanwhile",
        ),
    ],
)
def test_undeploy_deletes_and_waits_for_the_operation(
    executor: CloudFunctionExecutor, api: respx.MockRouter, answers: list[httpx.Response]
) -> None:
    delete = api.delete(f"{API}/{NAME}").respond(json=operation(4, done=False))
    poll = route_operation(api, 4, *answers)

    executor.undeploy_job(3)

    assert delete.called and poll.called


def test_undeploying_a_missing_function_is_not_an_error(
    executor: CloudFunctionExecutor, api: respx.MockRouter
) -> None:
    delete = api.delete(f"{API}/{NAME}").mock(
        return_value=google_error(404, "NOT_FOUND", "not found")
    )

    executor.undeploy_job(3)

    assert delete.call_count == 1


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (429, Throttled),
        (500, TransientInfrastructureError),
        (503, Throttled),
        (504, FaasTimeout),
        (401, AuthError),
    ],
)
def test_invoke_statuses_map_to_their_kinds(
    executor: CloudFunctionExecutor, api: respx.MockRouter, status: int, error_type: type[FaasError]
) -> None:
    api.get(f"{API}/{NAME}").respond(json=function())
    api.post(URI).respond(status, text="upstream says no", headers={"Retry-After": "3"})

    with pytest.raises(error_type) as caught:
        executor.invoke(3, b"x")

    assert caught.value.status == status
    assert caught.value.retry_after_s == (3.0 if caught.value.retryable else None)


def test_an_invoke_posts_to_the_uri_with_an_id_token_for_exactly_that_uri(
    executor: CloudFunctionExecutor, api: respx.MockRouter, tokens: CountingTokens
) -> None:
    get = api.get(f"{API}/{NAME}").respond(json=function())
    invoke = api.post(URI).respond(json={"result": [1, 2], "success": True, "fresh": True})

    assert executor.invoke(3, b"x") == b"\x01\x02"
    assert executor.invoke(3, b"y") == b"\x01\x02"

    assert tokens.audiences == [URI]
    assert get.call_count == 1
    sent = invoke.calls.last.request
    assert sent.headers["authorization"] == "Bearer id-token-1"
    assert json.loads(sent.content) == {"job_id": 3, "args": list(b"y")}


def test_an_invoke_reply_that_is_not_the_cores_is_a_serialization_error(
    executor: CloudFunctionExecutor, api: respx.MockRouter
) -> None:
    api.get(f"{API}/{NAME}").respond(json=function())
    api.post(URI).respond(200, text="<html>hello</html>")

    with pytest.raises(SerializationError):
        executor.invoke(3, b"x")


def test_a_function_failure_echoing_the_token_is_raised_without_it(
    executor: CloudFunctionExecutor, api: respx.MockRouter
) -> None:
    api.get(f"{API}/{NAME}").respond(json=function())
    api.post(URI).mock(
        side_effect=lambda request: httpx.Response(
            500, json={"success": False, "error": f"saw {request.headers['authorization']}"}
        )
    )

    with pytest.raises(FunctionError) as caught:
        executor.invoke(3, b"x")

    assert "id-token-1" not in caught.value.message
    assert "[redacted]" in caught.value.message
    assert "id-token" not in repr(executor)


def test_every_rpc_code_is_mapped_and_its_family_is_its_retryability() -> None:
    assert sorted(RPC_CODE_ERRORS) == list(range(1, 17))
    for name, error_type in RPC_CODE_ERRORS.values():
        error = error_type(name, provider="gcp")
        assert error.retryable == isinstance(error, TransientFaasError), name


def test_a_provider_config_is_refused_before_anything_is_sent(
    executor: CloudFunctionExecutor, api: respx.MockRouter
) -> None:
    with pytest.raises(InvalidConfig, match="ingress"):
        executor.deploy_job(3, PACKAGE, FaasConfig(provider_config={"ingress": "internal"}))

    assert not api.calls


@pytest.mark.parametrize("prefix", ["Blueprint", "9jobs", "job_x", "a" * 53, ""])
def test_a_prefix_that_makes_invalid_function_ids_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="function_prefix"):
        CloudFunctionExecutor("blueprint-test", "europe-west1", function_prefix=prefix)
    with pytest.raises(ValidationError, match="function_prefix"):
        GcpOptions(project_id="blueprint-test", region="europe-west1", function_prefix=prefix)


def test_the_longest_prefix_and_job_id_make_a_valid_function_id() -> None:
    executor = CloudFunctionExecutor(
        "blueprint-test", "europe-west1", function_prefix="a" * 52, credentials=CountingTokens()
    )
    function_id = executor.function_id(2**32 - 1)
    assert len(function_id) == 63
    assert re.fullmatch(r"[a-z][a-z0-9-]{2,61}[a-z0-9]", function_id)


def test_the_executor_is_built_from_settings_file_options(tmp_path: Any) -> None:
    key_file = tmp_path / "sa.json"
    executor = create_executor(
        "gcp",
        {
            "project_id": "blueprint-test",
            "region": "us-central1",
            "function_prefix": "acme",
            "credentials_file": str(key_file),
            "impersonate_service_account": "runner@blueprint-test.iam.gserviceaccount.com",
            "limits": {"max_request_bytes": 1_048_576},
        },
    )

    assert isinstance(executor, CloudFunctionExecutor)
    assert executor.function_id(4) == "acme-4"
    assert executor.region == "us-central1"
    assert executor.limits.max_request_bytes == 1_048_576
    assert executor.limits.max_timeout_secs == 3_600
    assert repr(executor) == (
        "CloudFunctionExecutor(project_id='blueprint-test', region='us-central1', "
        "function_prefix='acme', runtime='python312', credentials=GoogleTokens("
        f"credentials_file={key_file!r}, "
        "impersonate_service_account='runner@blueprint-test.iam.gserviceaccount.com'))"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("project_id", "Bad_Project"), ("region", "moon"), ("runtime", "nodejs20")],
)
def test_a_bad_option_is_named(field: str, value: str) -> None:
    options = {"project_id": "blueprint-test", "region": "europe-west1", field: value}
    with pytest.raises(ValidationError) as caught:
        create_executor("gcp", options)
    assert [problem["loc"] for problem in caught.value.errors()] == [(field,)]

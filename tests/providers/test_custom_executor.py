"""The Custom FaaS executor's wire shapes, replayed with respx (no server involved)."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import respx

from providers.base import FaasConfig
from providers.custom import CONFIG_HEADER, LIMITS, HttpFaasExecutor
from providers.errors import (
    AlreadyDeployed,
    AuthError,
    FaasTimeout,
    FunctionError,
    InfrastructureError,
    InvalidConfig,
    InvocationFailed,
    NotDeployed,
    PayloadTooLarge,
    SerializationError,
    Throttled,
)

BASE = "https://faas.example.com"
FUNCTION = "/api/functions/blueprint-job-7"
INVOKE = f"{FUNCTION}/invoke"
SECRET = "Bearer very-secret-api-key"
PACKAGE = b"PK\x05\x06" + bytes(18)


def _record(**overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "function_id": "blueprint-job-7",
        "endpoint": f"{BASE}{INVOKE}",
        "status": "deployed",
        "cold_start_ms": 12,
        "memory_mb": 256,
        "timeout_secs": 20,
    }
    return {**record, **overrides}


def _ok_reply(result: object = (1, 2, 3), **extra: object) -> dict[str, object]:
    body = {"job_id": 7, "result": list(result) if isinstance(result, tuple) else result}
    return {**body, "success": True, **extra}


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
def executor() -> Iterator[HttpFaasExecutor]:
    with HttpFaasExecutor(BASE) as executor:
        yield executor


# -- invoke -----------------------------------------------------------------------------


def test_invoke_posts_the_contract_body_and_returns_the_result_bytes(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    route = api.post(INVOKE).respond(200, json=_ok_reply((104, 105)))

    assert executor.invoke(7, b"\x00\x01\xff") == b"hi"

    request = route.calls.last.request
    assert json.loads(request.content) == {"job_id": 7, "args": [0, 1, 255]}
    assert request.headers["Content-Type"] == "application/json"


def test_invoke_maps_the_reported_metrics(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    reply = _ok_reply(execution_ms=45, memory_used_mb=128, cold_start=False)
    api.post(INVOKE).respond(200, json=reply)

    metrics = executor.invoke_with_metrics(7, b"x").metrics

    assert metrics.execution_ms == 45.0
    assert metrics.memory_used_mb == 128.0
    assert metrics.cold_start is False
    assert metrics.billed_ms is None
    assert metrics.total_ms > 0


def test_invoke_leaves_unreported_metrics_empty(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    api.post(INVOKE).respond(200, json=_ok_reply())

    metrics = executor.invoke_with_metrics(7, b"x").metrics

    assert (metrics.execution_ms, metrics.memory_used_mb, metrics.cold_start) == (None, None, None)


def test_a_result_given_as_a_json_string_is_taken_as_its_utf8_bytes(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    api.post(INVOKE).respond(200, json=_ok_reply("héllo"))

    assert executor.invoke(7, b"x") == "héllo".encode()


def test_an_empty_payload_travels_as_an_empty_array(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    route = api.post(INVOKE).respond(200, json=_ok_reply(()))

    assert executor.invoke(7, b"") == b""
    assert json.loads(route.calls.last.request.content) == {"job_id": 7, "args": []}


def test_a_megabyte_payload_round_trips(api: respx.MockRouter, executor: HttpFaasExecutor) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=_ok_reply(json.loads(request.content)["args"]))

    api.post(INVOKE).mock(side_effect=echo)
    payload = bytes(range(256)) * 4096

    assert executor.invoke(7, payload) == payload


@pytest.mark.parametrize("status", [200, 500])
def test_success_false_is_a_function_error_not_retried(
    api: respx.MockRouter, executor: HttpFaasExecutor, status: int
) -> None:
    body = {"job_id": 7, "result": [], "success": False, "error": "division by zero"}
    api.post(INVOKE).respond(status, json=body)

    with pytest.raises(FunctionError) as caught:
        executor.invoke(7, b"x")

    assert caught.value.retryable is False
    assert caught.value.status == status
    assert "division by zero" in caught.value.message


def test_a_function_that_ran_past_its_deadline_is_a_timeout(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    body = {"result": [], "success": False, "error": "timed out", "code": "FUNCTION_TIMEOUT"}
    api.post(INVOKE).respond(500, json=body)

    with pytest.raises(FaasTimeout):
        executor.invoke(7, b"x")


def test_a_500_without_a_failure_reply_is_a_retryable_platform_error(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    api.post(INVOKE).respond(500, json={"error": "disk full", "code": "INTERNAL_ERROR"})

    with pytest.raises(InfrastructureError) as caught:
        executor.invoke(7, b"x")

    assert caught.value.retryable is True
    assert "[INTERNAL_ERROR] disk full" in caught.value.message


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (401, AuthError),
        (403, AuthError),
        (404, NotDeployed),
        (413, PayloadTooLarge),
        (429, Throttled),
        (503, Throttled),
        (400, InfrastructureError),
    ],
)
def test_invoke_maps_error_statuses(
    api: respx.MockRouter,
    executor: HttpFaasExecutor,
    status: int,
    error_type: type[Exception],
) -> None:
    api.post(INVOKE).respond(status, json={"error": "no", "code": "X"})

    with pytest.raises(error_type):
        executor.invoke(7, b"x")


def test_a_throttled_invoke_carries_retry_after(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    api.post(INVOKE).respond(429, headers={"Retry-After": "3"}, json={"error": "busy"})

    with pytest.raises(Throttled) as caught:
        executor.invoke(7, b"x")

    assert caught.value.retry_after_s == 3.0


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({"success": True}).encode(),
        json.dumps(_ok_reply([1, 256])).encode(),
        json.dumps(_ok_reply([1, "a"])).encode(),
        json.dumps(_ok_reply(execution_ms="fast")).encode(),
        json.dumps(_ok_reply(cold_start="yes")).encode(),
    ],
)
def test_an_unreadable_reply_is_a_serialization_error(
    api: respx.MockRouter, executor: HttpFaasExecutor, content: bytes
) -> None:
    api.post(INVOKE).respond(200, content=content)

    with pytest.raises(SerializationError):
        executor.invoke(7, b"x")


def test_a_payload_over_the_cap_is_refused_before_sending(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    route = api.post(INVOKE).respond(200, json=_ok_reply())

    # 255 takes 4 characters with its comma: a quarter of the cap in bytes is over it.
    assert LIMITS.max_request_bytes is not None
    with pytest.raises(PayloadTooLarge, match="max_request_bytes"):
        executor.invoke(7, bytes([255]) * (LIMITS.max_request_bytes // 4))

    assert not route.called


def test_the_invoke_read_timeout_is_the_job_timeout_plus_a_margin(
    api: respx.MockRouter,
) -> None:
    route = api.post(INVOKE).respond(200, json=_ok_reply())
    executor = HttpFaasExecutor(BASE, connect_timeout_s=2, invoke_margin_s=5)
    executor.configure_job(7, FaasConfig(timeout_secs=20))

    executor.invoke(7, b"x")

    timeout = route.calls.last.request.extensions["timeout"]
    assert timeout["connect"] == 2.0
    assert timeout["read"] == 25.0


def test_an_unconfigured_job_reads_for_the_default_timeout_plus_the_margin(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    route = api.post(INVOKE).respond(200, json=_ok_reply())

    executor.invoke(7, b"x")

    assert route.calls.last.request.extensions["timeout"]["read"] == 300 + 10


def test_control_calls_use_the_short_control_timeout(api: respx.MockRouter) -> None:
    route = api.get(f"{FUNCTION}/health").respond(200, json={"status": "healthy"})
    executor = HttpFaasExecutor(BASE, control_timeout_s=4, connect_timeout_s=1)

    executor.health_check(7)

    timeout = route.calls.last.request.extensions["timeout"]
    assert (timeout["connect"], timeout["read"], timeout["write"]) == (1.0, 4.0, 4.0)


@pytest.mark.parametrize(
    ("exception", "error_type"),
    [(httpx.ReadTimeout("slow"), FaasTimeout), (httpx.ConnectError("refused"), InvocationFailed)],
)
def test_transport_failures_during_invoke_are_transient(
    api: respx.MockRouter,
    executor: HttpFaasExecutor,
    exception: Exception,
    error_type: type[Exception],
) -> None:
    api.post(INVOKE).mock(side_effect=exception)

    with pytest.raises(error_type) as caught:
        executor.invoke(7, b"x")

    assert caught.value.__cause__ is exception


def test_a_job_endpoint_overrides_only_the_invoke_url(api: respx.MockRouter) -> None:
    other = api.post("https://edge.example.net/run/7").respond(200, json=_ok_reply((9,)))
    health = api.get(f"{FUNCTION}/health").respond(200, json={})
    executor = HttpFaasExecutor(BASE).with_job_endpoint(7, "https://edge.example.net/run/7")

    assert executor.invoke(7, b"x") == b"\x09"
    assert executor.health_check(7) is True
    assert other.called and health.called


def test_a_job_endpoint_must_be_an_absolute_http_url() -> None:
    with pytest.raises(ValueError):
        HttpFaasExecutor(BASE).with_job_endpoint(7, "/relative")


def test_the_function_prefix_names_the_function(api: respx.MockRouter) -> None:
    route = api.post("/api/functions/bp-7/invoke").respond(200, json=_ok_reply())

    executor = HttpFaasExecutor(BASE, function_prefix="bp")
    executor.invoke(7, b"x")

    assert executor.function_id(7) == "bp-7"
    assert route.called


# -- auth and secrets ---------------------------------------------------------------------


def test_the_auth_header_is_sent_with_every_request(api: respx.MockRouter) -> None:
    invoke = api.post(INVOKE).respond(200, json=_ok_reply())
    delete = api.delete(FUNCTION).respond(200, json={"status": "deleted"})
    executor = HttpFaasExecutor(BASE).with_auth_header("Authorization", SECRET)

    executor.invoke(7, b"x")
    executor.undeploy_job(7)

    assert invoke.calls.last.request.headers["Authorization"] == SECRET
    assert delete.calls.last.request.headers["Authorization"] == SECRET


def test_constructor_headers_are_sent_too(api: respx.MockRouter) -> None:
    route = api.post(INVOKE).respond(200, json=_ok_reply())

    HttpFaasExecutor(BASE, headers={"X-Api-Key": "k-123"}).invoke(7, b"x")

    assert route.calls.last.request.headers["X-Api-Key"] == "k-123"


def test_an_auth_header_added_after_first_use_replaces_the_old_one(
    api: respx.MockRouter,
) -> None:
    route = api.post(INVOKE).respond(200, json=_ok_reply())
    executor = HttpFaasExecutor(BASE).with_auth_header("Authorization", "Bearer old")
    executor.invoke(7, b"x")

    executor.with_auth_header("authorization", SECRET).invoke(7, b"x")

    assert route.calls.last.request.headers.get_list("Authorization") == [SECRET]


def test_the_auth_value_never_reaches_repr_errors_or_logs(
    api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    echo = {"error": f"refused header {SECRET}", "code": "UNAUTHORIZED"}
    api.post(INVOKE).respond(401, json=echo)
    executor = HttpFaasExecutor(BASE).with_auth_header("Authorization", SECRET)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(AuthError) as caught:
        executor.invoke(7, b"x")

    token = SECRET.split()[-1]
    assert "Authorization" in repr(executor)
    for text in (repr(executor), caught.value.message, repr(caught.value), caplog.text):
        assert token not in text


@pytest.mark.parametrize("status", [200, 500])
def test_a_function_error_echoing_the_auth_value_is_redacted(
    api: respx.MockRouter, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    token = SECRET.split()[-1]
    echo = f"got Authorization: {SECRET} (token {token})"
    api.post(INVOKE).respond(status, json={"result": [], "success": False, "error": echo})
    executor = HttpFaasExecutor(BASE).with_auth_header("Authorization", SECRET)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(FunctionError) as caught:
        executor.invoke(7, b"x")

    assert "[redacted]" in caught.value.message
    for text in (caught.value.message, repr(caught.value), caplog.text):
        assert token not in text


def test_a_client_certificate_is_loaded_lazily_and_a_missing_one_is_invalid_config(
    api: respx.MockRouter, tmp_path: Path
) -> None:
    api.post(INVOKE).respond(200, json=_ok_reply())
    missing = tmp_path / "client.pem"

    executor = HttpFaasExecutor(BASE).with_client_cert(missing, tmp_path / "client.key")

    assert "client.pem" in repr(executor)
    with pytest.raises(InvalidConfig):
        executor.invoke(7, b"x")


def test_constructor_client_certificate_arguments_are_used(tmp_path: Path) -> None:
    executor = HttpFaasExecutor(BASE, cert_path=tmp_path / "c.pem", key_path=tmp_path / "k.pem")

    assert "c.pem" in repr(executor) and "k.pem" in repr(executor)


@pytest.mark.parametrize("url", ["faas.example.com", "ftp://faas.example.com", "http://"])
def test_the_base_url_must_be_absolute_http(url: str) -> None:
    with pytest.raises(ValueError):
        HttpFaasExecutor(url)


def test_one_executor_serves_many_threads(api: respx.MockRouter) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=_ok_reply(json.loads(request.content)["args"]))

    api.post(INVOKE).mock(side_effect=echo)
    executor = HttpFaasExecutor(BASE)
    results: dict[int, bytes] = {}

    def call(index: int) -> None:
        results[index] = executor.invoke(7, bytes([index]) * 100)

    threads = [threading.Thread(target=call, args=(index,)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert results == {index: bytes([index]) * 100 for index in range(16)}


# -- deploy -------------------------------------------------------------------------------


def _config_of(request: httpx.Request) -> dict[str, object]:
    decoded: dict[str, object] = json.loads(base64.b64decode(request.headers[CONFIG_HEADER]))
    return decoded


def test_deploy_puts_the_zip_with_the_base64_config_header(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    route = api.put(FUNCTION).respond(200, json=_record())
    config = FaasConfig(memory_mb=256, timeout_secs=20, max_concurrency=5, env_vars={"A": "b"})

    deployment = executor.deploy_job(7, PACKAGE, config)

    request = route.calls.last.request
    assert request.content == PACKAGE
    assert request.headers["Content-Type"] == "application/zip"
    assert _config_of(request) == {
        "memory_mb": 256,
        "timeout_secs": 20,
        "max_concurrency": 5,
        "env_vars": {"A": "b"},
    }
    assert deployment.function_id == "blueprint-job-7"
    assert deployment.endpoint == f"{BASE}{INVOKE}"
    assert (deployment.memory_mb, deployment.timeout_secs) == (256, 20)
    assert deployment.cold_start_ms == 12.0
    assert deployment.package_size_bytes == len(PACKAGE)
    assert deployment.provider == "custom"
    assert executor.job_config(7) == config


def test_deploy_leaves_an_unset_max_concurrency_to_the_platform(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    route = api.put(FUNCTION).respond(200, json=_record())

    executor.deploy_job(7, PACKAGE, FaasConfig())

    assert _config_of(route.calls.last.request) == {
        "memory_mb": 512,
        "timeout_secs": 300,
        "env_vars": {},
    }


def test_deploy_over_an_existing_function_deletes_it_and_puts_again(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    put = api.put(FUNCTION).mock(
        side_effect=[
            httpx.Response(409, json={"error": "exists", "code": "FUNCTION_EXISTS"}),
            httpx.Response(200, json=_record()),
        ]
    )
    delete = api.delete(FUNCTION).respond(200, json={"status": "deleted"})

    deployment = executor.deploy_job(7, PACKAGE)

    assert deployment.status == "deployed"
    assert put.call_count == 2 and delete.call_count == 1
    methods = [call.request.method for call in api.calls]
    assert methods == ["PUT", "DELETE", "PUT"]


def test_a_deploy_that_loses_the_race_twice_is_already_deployed(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    api.put(FUNCTION).respond(409, json={"error": "exists", "code": "FUNCTION_EXISTS"})
    api.delete(FUNCTION).respond(200, json={"status": "deleted"})

    with pytest.raises(AlreadyDeployed):
        executor.deploy_job(7, PACKAGE)


def test_a_refused_deploy_config_is_invalid_config(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    api.put(FUNCTION).respond(400, json={"error": "bad memory", "code": "INVALID_CONFIG"})

    with pytest.raises(InvalidConfig) as caught:
        executor.deploy_job(7, PACKAGE, FaasConfig(memory_mb=256))

    assert "[INVALID_CONFIG] bad memory" in caught.value.message


def test_a_too_large_package_is_payload_too_large(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    api.put(FUNCTION).respond(413, json={"error": "too big", "code": "PACKAGE_TOO_LARGE"})

    with pytest.raises(PayloadTooLarge):
        executor.deploy_job(7, PACKAGE)


def test_provider_config_is_refused_before_anything_is_sent(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    route = api.put(FUNCTION).respond(200, json=_record())

    with pytest.raises(InvalidConfig):
        executor.deploy_job(7, PACKAGE, FaasConfig(provider_config={"region": "x"}))

    assert not route.called


# -- health, get, undeploy, warm ---------------------------------------------------------


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (404, False), (503, False)])
def test_health_is_a_get_answered_by_status(
    api: respx.MockRouter, executor: HttpFaasExecutor, status: int, healthy: bool
) -> None:
    route = api.get(f"{FUNCTION}/health").respond(status, json={})

    assert executor.health_check(7) is healthy
    assert route.called


@pytest.mark.parametrize(("status", "error_type"), [(401, AuthError), (500, InfrastructureError)])
def test_a_failure_to_ask_for_health_raises(
    api: respx.MockRouter,
    executor: HttpFaasExecutor,
    status: int,
    error_type: type[Exception],
) -> None:
    api.get(f"{FUNCTION}/health").respond(status, json={})

    with pytest.raises(error_type):
        executor.health_check(7)


def test_get_deployment_parses_the_date_and_the_binary_size(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    record = _record(deployed_at="2025-03-01T12:30:00.250Z", binary_size_bytes=2048)
    api.get(FUNCTION).respond(200, json=record)

    deployment = executor.get_deployment(7)

    assert deployment.deployed_at == datetime(2025, 3, 1, 12, 30, 0, 250_000, tzinfo=UTC)
    assert deployment.package_size_bytes == 2048
    assert deployment.job_id == 7


@pytest.mark.parametrize(
    "record",
    [
        _record(deployed_at="yesterday"),
        _record(deployed_at=17),
        _record(memory_mb="256"),
        _record(function_id=None),
    ],
)
def test_get_deployment_refuses_a_malformed_record(
    api: respx.MockRouter, executor: HttpFaasExecutor, record: dict[str, object]
) -> None:
    api.get(FUNCTION).respond(200, json=record)

    with pytest.raises(SerializationError):
        executor.get_deployment(7)


def test_get_deployment_of_a_missing_function_is_not_deployed(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    api.get(FUNCTION).respond(404, json={"error": "missing", "code": "FUNCTION_NOT_FOUND"})

    with pytest.raises(NotDeployed):
        executor.get_deployment(7)


@pytest.mark.parametrize("status", [200, 404])
def test_undeploy_deletes_and_a_missing_function_is_fine(
    api: respx.MockRouter, executor: HttpFaasExecutor, status: int
) -> None:
    route = api.delete(FUNCTION).respond(status, json={})

    executor.undeploy_job(7)

    assert route.called


def test_undeploy_raises_when_the_platform_fails(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    api.delete(FUNCTION).respond(500, json={})

    with pytest.raises(InfrastructureError):
        executor.undeploy_job(7)


def test_warm_posts_the_instance_count_and_returns_how_many_are_warm(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    reply = {"function_id": "blueprint-job-7", "status": "warm", "instances_warmed": 3}
    route = api.post(f"{FUNCTION}/warm").respond(200, json=reply)

    assert executor.warm(7, 3) == 3
    assert route.calls.last.request.url.params["instances"] == "3"


def test_close_releases_the_pool_and_the_executor_still_works(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    api.post(INVOKE).respond(200, json=_ok_reply())
    executor.invoke(7, b"x")

    executor.close()

    assert executor.invoke(7, b"x") == b"\x01\x02\x03"


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (json.dumps(_ok_reply(execution_ms="fast")).encode(), "'execution_ms'"),
        (json.dumps(_ok_reply([1, 256])).encode(), "'result' is not an array of 0..255"),
        (json.dumps({"success": True}).encode(), "'result' is missing"),
        (b"[1, 2]", "is not a JSON object"),
    ],
)
def test_a_serialization_error_names_the_reply_the_field_and_the_provider(
    api: respx.MockRouter, executor: HttpFaasExecutor, content: bytes, named: str
) -> None:
    api.post(INVOKE).respond(200, content=content)

    with pytest.raises(SerializationError) as caught:
        executor.invoke(7, b"x")

    assert caught.value.message.startswith("POST reply (HTTP 200) from custom is malformed")
    assert named in caught.value.message
    assert caught.value.provider == "custom"


def test_a_deployment_record_field_of_the_wrong_type_is_named(
    api: respx.MockRouter, executor: HttpFaasExecutor
) -> None:
    api.get(FUNCTION).respond(200, json=_record(memory_mb="256"))

    with pytest.raises(SerializationError) as caught:
        executor.get_deployment(7)

    assert "GET reply (HTTP 200) from custom is malformed: 'memory_mb'" in caught.value.message

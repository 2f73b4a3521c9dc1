"""The DigitalOcean executor's invocations, replayed with respx against OpenWhisk's wire.

Shapes from ``apache/openwhisk``: ``Actions.scala`` (``doInvoke``: 200 with the record, 502
for an application or developer error, 500 otherwise, 202 ``{activationId}`` when the wait
ended first), ``ActivationResult.scala`` (the ``response.status`` texts) and
``WhiskActivation.scala`` (``initTime``, ``waitTime``, ``timeout`` annotations).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from providers import digitalocean
from providers.base import FaasConfig
from providers.digitalocean import DigitalOceanExecutor
from providers.errors import (
    AuthError,
    FaasError,
    FaasTimeout,
    FunctionError,
    NotDeployed,
    PayloadTooLarge,
    PermanentInfrastructureError,
    SerializationError,
    Throttled,
    TransientFaasError,
    TransientInfrastructureError,
)
from tests.providers.test_digitalocean_control_plane import (
    API_HOST,
    KEY,
    NAMESPACES,
    NS,
    UUID,
    namespace_info,
)

INVOKE = f"{API_HOST}/api/v1/namespaces/{NS}/actions/blueprint-job-3"
ACTIVATION_ID = "3f1e5c9a0b8d4e2fae5c9a0b8d4e2f11"
ACTIVATION = f"{API_HOST}/api/v1/namespaces/{NS}/activations/{ACTIVATION_ID}"
TOKEN = "dop_v1_invoke_token_9876543210"


def record(
    status: str = "success",
    result: Any = None,
    *,
    duration: int = 42,
    cold: bool = False,
    timed_out: bool = False,
) -> dict[str, Any]:
    """An activation record as ``toExtendedJson`` writes it."""
    annotations: list[dict[str, Any]] = [
        {"key": "path", "value": f"{NS}/blueprint-job-3"},
        {"key": "waitTime", "value": 5},
        {"key": "kind", "value": "python:3.11"},
        {"key": "timeout", "value": timed_out},
        {"key": "limits", "value": {"concurrency": 1, "logs": 16, "memory": 256, "timeout": 60000}},
    ]
    if cold:
        annotations.append({"key": "initTime", "value": 310})
    return {
        "activationId": ACTIVATION_ID,
        "namespace": NS,
        "name": "blueprint-job-3",
        "version": "0.0.1",
        "subject": "someone",
        "start": 1_764_496_800_000,
        "end": 1_764_496_800_000 + duration,
        "duration": duration,
        "logs": [],
        "annotations": annotations,
        "publish": False,
        "response": {"status": status, "success": status == "success", "result": result},
    }


def core_reply(output: bytes) -> dict[str, Any]:
    return {"job_id": 3, "result": list(output), "success": True, "fresh": False, "handler_ms": 1.5}


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        router.get(NAMESPACES).respond(200, json={"namespaces": [namespace_info()]})
        yield router


@pytest.fixture
def executor() -> Iterator[DigitalOceanExecutor]:
    with DigitalOceanExecutor(TOKEN, "ams3", throttle_retry_after_s=2.5) as executor:
        yield executor


def test_a_blocking_invoke_sends_the_request_and_returns_the_output(
    api: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    route = api.post(INVOKE).respond(200, json=record(result=core_reply(b"hi")))
    lookup = api.get(INVOKE).respond(200, json={})

    assert executor.invoke(3, b"\x00\x01\xff") == b"hi"
    assert executor.invoke(3, b"\x00\x01\xff") == b"hi"

    # One POST per call, with the namespace's credentials, and no GET of the action first.
    assert route.call_count == 2
    assert not lookup.called
    request = route.calls.last.request
    credentials = base64.b64encode(f"{UUID}:{KEY}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {credentials}"
    # blocking=true alone: result=true would answer the bare result, without the metrics.
    assert dict(request.url.params) == {"blocking": "true"}
    assert json.loads(request.content) == {"job_id": 3, "args": [0, 1, 255]}


@pytest.mark.parametrize("cold", [True, False])
def test_the_metrics_are_the_duration_and_the_init_time_annotation(
    api: respx.MockRouter, executor: DigitalOceanExecutor, cold: bool
) -> None:
    api.post(INVOKE).respond(200, json=record(result=core_reply(b"x"), duration=87, cold=cold))

    metrics = executor.invoke_with_metrics(3, b"x").metrics

    assert metrics.execution_ms == 87
    assert metrics.cold_start is cold


def test_a_202_is_polled_through_its_first_404s_until_the_record_exists(
    api: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    api.post(INVOKE).respond(202, json={"activationId": ACTIVATION_ID})
    polls = api.get(ACTIVATION).mock(
        side_effect=[
            httpx.Response(404, json={"error": "The requested resource does not exist."}),
            httpx.Response(404, json={"error": "The requested resource does not exist."}),
            httpx.Response(200, json=record(result=core_reply(b"late"), duration=31_000)),
        ]
    )

    response = executor.invoke_with_metrics(3, b"x")

    assert response.body == b"late"
    assert response.metrics.execution_ms == 31_000
    assert polls.call_count == 3


def test_a_polled_activation_that_failed_is_raised(
    api: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    api.post(INVOKE).respond(202, json={"activationId": ACTIVATION_ID})
    api.get(ACTIVATION).respond(
        200, json=record("application error", {"error": "ValueError: bad input"})
    )

    with pytest.raises(FunctionError, match="ValueError: bad input"):
        executor.invoke(3, b"x")


def test_a_polled_activation_never_recorded_times_out_at_the_jobs_deadline(
    api: respx.MockRouter,
) -> None:
    api.post(INVOKE).respond(202, json={"activationId": ACTIVATION_ID})
    api.get(ACTIVATION).respond(404, json={"error": "The requested resource does not exist."})
    executor = DigitalOceanExecutor(TOKEN, "ams3", invoke_margin_s=0)
    executor.configure_job(3, FaasConfig(timeout_secs=1))

    with pytest.raises(FaasTimeout, match=f"activation {ACTIVATION_ID}"):
        executor.invoke(3, b"x")


def test_an_application_error_is_a_function_error_with_the_actions_message(
    api: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    failure = {"job_id": 3, "result": [], "success": False, "error": "ZeroDivisionError: x"}
    route = api.post(INVOKE).respond(502, json=record("application error", failure))

    with pytest.raises(FunctionError, match="ZeroDivisionError: x") as caught:
        executor.invoke(3, b"x")

    assert caught.value.retryable is False
    assert caught.value.status == 502
    assert route.call_count == 1


def test_an_action_developer_error_is_a_function_error(
    api: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    crash = {"error": "An error has occurred: MemoryError"}
    api.post(INVOKE).respond(502, json=record("action developer error", crash))

    with pytest.raises(FunctionError, match="action developer error: An error has occurred"):
        executor.invoke(3, b"x")


@pytest.mark.parametrize("status", ["action developer error", "application error"])
def test_an_activation_marked_timed_out_is_a_timeout(
    api: respx.MockRouter, executor: DigitalOceanExecutor, status: str
) -> None:
    error = {"error": "The action exceeded its time limits of 60000 milliseconds."}
    api.post(INVOKE).respond(502, json=record(status, error, timed_out=True))

    with pytest.raises(FaasTimeout, match="exceeded its time limits"):
        executor.invoke(3, b"x")


def test_a_whisk_internal_error_is_retryable(
    api: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    api.post(INVOKE).respond(500, json=record("whisk internal error", {"error": "boom"}))

    with pytest.raises(TransientInfrastructureError) as caught:
        executor.invoke(3, b"x")

    assert caught.value.status == 500


def test_an_unknown_activation_status_is_a_permanent_error(
    api: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    api.post(INVOKE).respond(502, json=record("something new", {"error": "?"}))

    with pytest.raises(PermanentInfrastructureError):
        executor.invoke(3, b"x")


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (401, AuthError),
        (403, AuthError),
        (404, NotDeployed),
        (413, PayloadTooLarge),
        (500, TransientInfrastructureError),
        (502, TransientInfrastructureError),
        (503, Throttled),
    ],
)
def test_an_http_error_without_a_record_is_typed_by_its_status(
    api: respx.MockRouter,
    executor: DigitalOceanExecutor,
    status: int,
    error_type: type[Exception],
) -> None:
    api.post(INVOKE).respond(status, json={"error": "refused", "code": "ab12"})

    with pytest.raises(error_type) as caught:
        executor.invoke(3, b"x")

    assert isinstance(caught.value, Exception)
    assert getattr(caught.value, "status", None) == status


def test_a_429_without_headers_waits_the_configured_time(
    api: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    throttled = {
        "error": "Too many concurrent requests in flight (count: 121, allowed: 120).",
        "code": "c1",
    }
    api.post(INVOKE).respond(429, json=throttled)

    with pytest.raises(Throttled) as caught:
        executor.invoke(3, b"x")

    assert caught.value.retryable is True
    assert caught.value.retry_after_s == 2.5


def test_a_429_with_retry_after_honours_it(
    api: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    api.post(INVOKE).respond(429, json={"error": "slow down"}, headers={"Retry-After": "9"})

    with pytest.raises(Throttled) as caught:
        executor.invoke(3, b"x")

    assert caught.value.retry_after_s == 9


def test_a_reply_that_is_not_the_handler_cores_is_a_serialization_error(
    api: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    api.post(INVOKE).respond(200, json=record(result={"result": "not bytes"}))

    with pytest.raises(SerializationError, match="malformed"):
        executor.invoke(3, b"x")


def test_a_request_over_one_megabyte_is_refused_before_anything_is_sent(
    api: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    route = api.post(INVOKE).respond(200, json=record(result=core_reply(b"")))

    with pytest.raises(PayloadTooLarge, match="1048576"):
        executor.invoke(3, bytes([200]) * 300_000)  # 1.2 MB as JSON digits

    assert not route.called


def test_the_env_parameter_counts_toward_the_one_megabyte_of_input(
    api: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    route = api.post(INVOKE).respond(200, json=record(result=core_reply(b"")))
    payload = bytes(200_000)  # about 400 KB as JSON digits
    executor.invoke(3, payload)
    executor.configure_job(3, FaasConfig(env_vars={"BIG": "x" * 700_000}))

    with pytest.raises(PayloadTooLarge):
        executor.invoke(3, payload)

    assert route.call_count == 1


def test_a_namespace_whose_api_host_is_not_a_url_is_a_serialization_error(
    api: respx.MockRouter,
) -> None:
    api.get(NAMESPACES).respond(
        200, json={"namespaces": [namespace_info(region="sfo3", api_host="not a url")]}
    )
    executor = DigitalOceanExecutor(TOKEN, "sfo3")

    with pytest.raises(SerializationError, match="api_host"):
        executor.invoke(3, b"x")


ACTIVATION_STATUSES = {
    "application error": FunctionError,
    "action developer error": FunctionError,
    "whisk internal error": TransientInfrastructureError,
}


def test_every_mapped_activation_status_is_covered_by_this_suite() -> None:
    assert dict(digitalocean._ACTIVATION_ERRORS) == ACTIVATION_STATUSES


@pytest.mark.parametrize(("status", "error_type"), ACTIVATION_STATUSES.items())
def test_a_failed_activation_is_typed_by_its_status_and_retryable_by_its_family(
    api: respx.MockRouter,
    executor: DigitalOceanExecutor,
    status: str,
    error_type: type[FaasError],
) -> None:
    api.post(INVOKE).respond(502, json=record(status, {"error": "why"}))

    with pytest.raises(error_type) as caught:
        executor.invoke(3, b"x")

    assert caught.value.retryable is isinstance(caught.value, TransientFaasError)
    assert caught.value.provider == "digitalocean"

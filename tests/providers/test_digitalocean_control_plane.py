"""The DigitalOcean executor's control plane, replayed with respx against the documented shapes.

The namespaces API (``digitalocean/openapi``: ``namespace_info.yml``, ``error.yml``, the
``ratelimit-*`` headers, 200 on create and 422 at the namespace limit) and OpenWhisk's action
calls (``apache/openwhisk``'s ``apiv1swagger.json``).
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import respx

from providers.base import FaasConfig
from providers.digitalocean import DigitalOceanExecutor
from providers.errors import (
    AuthError,
    InvalidConfig,
    NotDeployed,
    PayloadTooLarge,
    PermanentInfrastructureError,
    Throttled,
    TransientInfrastructureError,
)
from providers.packaging import ENV_PARAMETER, build_digitalocean_package

API = "https://api.digitalocean.com"
NAMESPACES = f"{API}/v2/functions/namespaces"
API_HOST = "https://faas-ams3-2a2f5b8c.doserverless.co"
NS = "fn-b4d6b7f2-0d35-4c6d-9dc0-6ad0a1c7c2b1"
UUID = "b4d6b7f2-0d35-4c6d-9dc0-6ad0a1c7c2b1"
KEY = "d1zcd455h01mqjfs4s2eaewyejehi5f2uj4etqq3h7cera8iwkub6xg5of1wdde2"
TOKEN = "dop_v1_control_plane_token_0123456789"
ACTION = f"{API_HOST}/api/v1/namespaces/{NS}/actions/blueprint-job-3"


def namespace_info(
    label: str = "blueprint-functions", region: str = "ams3", **fields: str
) -> dict[str, str]:
    """A namespace as ``GET /v2/functions/namespaces`` lists it: no ``id`` field."""
    return {
        "api_host": API_HOST,
        "namespace": NS,
        "created_at": "2026-11-30T10:00:00Z",
        "updated_at": "2026-11-30T10:00:00Z",
        "label": label,
        "region": region,
        "uuid": UUID,
        "key": KEY,
        **fields,
    }


def action_record(
    version: str = "0.0.1", timeout_ms: int = 60_000, memory_mb: int = 256
) -> dict[str, object]:
    return {
        "namespace": NS,
        "name": "blueprint-job-3",
        "version": version,
        "exec": {"kind": "python:3.11", "binary": True},
        "limits": {"timeout": timeout_ms, "memory": memory_mb, "logs": 16, "concurrency": 1},
        "parameters": [{"key": ENV_PARAMETER, "value": {"SECRET": "hidden"}}],
        "annotations": [],
        "publish": False,
        "updated": 1_764_496_800_000,
    }


def do_error(status: int, ident: str, message: str, **headers: str) -> httpx.Response:
    body = {"id": ident, "message": message, "request_id": "4d9d8375-3c56-4925-a3e7-eb137fed17e9"}
    return httpx.Response(status, json=body, headers=headers)


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def executor() -> Iterator[DigitalOceanExecutor]:
    with DigitalOceanExecutor(TOKEN, "ams3") as executor:
        yield executor


@pytest.fixture
def package(tmp_path: Path) -> bytes:
    source = tmp_path / "square.py"
    source.write_text("def run(payload):\n    return bytes(b * b % 256 for b in payload)\n")
    return build_digitalocean_package("square:run", sources=[source])


# -- construction --------------------------------------------------------------------------


def test_the_constructor_does_no_network_io(api: respx.MockRouter) -> None:
    route = api.route().respond(500)

    executor = DigitalOceanExecutor(TOKEN, "ams3")

    assert executor.region == "ams3"
    assert not route.called


def test_the_token_comes_from_digitalocean_token_when_not_given(
    api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", TOKEN)
    route = api.get(NAMESPACES).respond(200, json={"namespaces": [namespace_info()]})
    api.get(ACTION).respond(200, json=action_record())

    DigitalOceanExecutor(None, "ams3").get_deployment(3)

    assert route.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_no_token_at_all_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="DIGITALOCEAN_TOKEN"):
        DigitalOceanExecutor(None, "ams3")


# -- the namespace ----------------------------------------------------------------------


def test_the_namespace_of_the_label_in_the_requested_region_is_used(
    api: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    elsewhere = namespace_info(region="nyc1", api_host="https://faas-nyc1.example", uuid="other")
    api.get(NAMESPACES).respond(
        200, json={"namespaces": [elsewhere, namespace_info(label="another"), namespace_info()]}
    )
    create = api.post(NAMESPACES).respond(500)
    action = api.get(ACTION).respond(200, json=action_record())

    executor.get_deployment(3)

    assert not create.called
    sent = action.calls.last.request
    expected = base64.b64encode(f"{UUID}:{KEY}".encode()).decode()
    assert sent.headers["Authorization"] == f"Basic {expected}"


def test_a_missing_namespace_is_created_in_the_region_with_the_label(
    api: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    api.get(NAMESPACES).respond(200, json={"namespaces": [namespace_info(region="nyc1")]})
    create = api.post(NAMESPACES).respond(200, json={"namespace": namespace_info()})
    api.get(ACTION).respond(200, json=action_record())

    executor.get_deployment(3)

    assert json.loads(create.calls.last.request.content) == {
        "label": "blueprint-functions",
        "region": "ams3",
    }


def test_the_namespace_is_looked_up_once_for_every_thread(
    api: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    listing = api.get(NAMESPACES).respond(200, json={"namespaces": [namespace_info()]})
    api.get(ACTION).respond(200, json=action_record())
    threads = [threading.Thread(target=executor.get_deployment, args=(3,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert listing.call_count == 1
    assert repr(executor).count(NS) == 1


def test_the_namespace_limit_is_a_clear_permanent_error(
    api: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    api.get(NAMESPACES).respond(200, json={"namespaces": []})
    api.post(NAMESPACES).mock(
        return_value=do_error(422, "unprocessable_entity", "namespace limit reached")
    )

    with pytest.raises(PermanentInfrastructureError, match="limit of namespaces") as caught:
        executor.get_deployment(3)

    assert caught.value.status == 422
    assert caught.value.retryable is False


def test_a_throttled_api_call_waits_until_ratelimit_reset(
    api: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    reset = int(time.time()) + 40
    api.get(NAMESPACES).mock(
        return_value=do_error(
            429,
            "too_many_requests",
            "API rate limit exceeded.",
            **{"ratelimit-limit": "250", "ratelimit-remaining": "0", "ratelimit-reset": str(reset)},
        )
    )

    with pytest.raises(Throttled) as caught:
        executor.get_deployment(3)

    assert caught.value.retry_after_s is not None
    assert 30 <= caught.value.retry_after_s <= 40
    assert "[too_many_requests] API rate limit exceeded." in str(caught.value)


def test_a_refused_token_is_an_auth_error_that_does_not_show_it(
    api: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    api.get(NAMESPACES).mock(
        return_value=do_error(401, "unauthorized", "Unable to authenticate you.")
    )

    with pytest.raises(AuthError, match="unauthorized") as caught:
        executor.get_deployment(3)

    assert TOKEN not in str(caught.value) + repr(caught.value) + repr(executor)


def test_a_failed_lookup_is_tried_again_on_the_next_call(
    api: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    api.get(NAMESPACES).mock(
        side_effect=[
            do_error(500, "server_error", "Unexpected server-side error"),
            httpx.Response(200, json={"namespaces": [namespace_info()]}),
        ]
    )
    api.get(ACTION).respond(200, json=action_record())

    with pytest.raises(TransientInfrastructureError):
        executor.get_deployment(3)
    assert executor.get_deployment(3).function_id == "blueprint-job-3"


# -- actions -------------------------------------------------------------------------------


@pytest.fixture
def bound(api: respx.MockRouter) -> respx.MockRouter:
    api.get(NAMESPACES).respond(200, json={"namespaces": [namespace_info()]})
    return api


def test_deploy_puts_a_binary_zip_action_with_do_limits_and_the_env_as_one_parameter(
    bound: respx.MockRouter, executor: DigitalOceanExecutor, package: bytes
) -> None:
    route = bound.put(ACTION).respond(200, json=action_record("0.0.2", 120_000, 512))
    config = FaasConfig(memory_mb=512, timeout_secs=120, env_vars={"SECRET": "hidden"})

    deployment = executor.deploy_job(3, package, config)

    request = route.calls.last.request
    assert request.url.params["overwrite"] == "true"
    body = json.loads(request.content)
    assert body["exec"]["kind"] == "python:3.11"
    assert body["exec"]["binary"] is True
    assert body["exec"]["main"] == "main"
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(body["exec"]["code"]))) as archive:
        assert "__main__.py" in archive.namelist()
    assert body["limits"] == {"timeout": 120_000, "memory": 512}
    assert body["parameters"] == [{"key": ENV_PARAMETER, "value": {"SECRET": "hidden"}}]
    assert deployment.function_id == "blueprint-job-3"
    assert deployment.memory_mb == 512
    assert deployment.timeout_secs == 120
    assert deployment.status == "deployed (version 0.0.2)"
    assert deployment.endpoint == ACTION
    assert deployment.package_size_bytes == len(package)


def test_get_deployment_reads_the_limits_version_and_date_back_from_the_action(
    bound: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    bound.get(ACTION).respond(200, json=action_record("0.0.7", 900_000, 1024))

    deployment = executor.get_deployment(3)

    assert (deployment.memory_mb, deployment.timeout_secs) == (1024, 900)
    assert deployment.status == "deployed (version 0.0.7)"
    assert deployment.deployed_at == datetime.fromtimestamp(1_764_496_800, UTC)


def test_a_missing_action_is_not_deployed(
    bound: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    bound.get(ACTION).respond(404, json={"error": "The requested resource does not exist."})

    with pytest.raises(NotDeployed):
        executor.get_deployment(3)
    assert executor.health_check(3) is False


def test_undeploy_deletes_the_action_and_a_missing_one_is_no_error(
    bound: respx.MockRouter, executor: DigitalOceanExecutor
) -> None:
    route = bound.delete(ACTION).mock(
        side_effect=[
            httpx.Response(200, json=action_record()),
            httpx.Response(404, json={"error": "The requested resource does not exist."}),
        ]
    )

    executor.undeploy_job(3)
    executor.undeploy_job(3)

    assert route.call_count == 2


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (413, PayloadTooLarge),
        (400, InvalidConfig),
        (401, AuthError),
        (502, TransientInfrastructureError),
    ],
)
def test_a_refused_deploy_is_typed_by_its_status(
    bound: respx.MockRouter,
    executor: DigitalOceanExecutor,
    package: bytes,
    status: int,
    error_type: type[Exception],
) -> None:
    bound.put(ACTION).respond(status, json={"error": "refused", "code": "c0ffee"})

    with pytest.raises(error_type):
        executor.deploy_job(3, package)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (FaasConfig(memory_mb=2048), "memory_mb"),
        (FaasConfig(memory_mb=64), "memory_mb"),
        (FaasConfig(timeout_secs=901), "timeout_secs"),
        (FaasConfig(max_concurrency=5), "max_concurrency"),
        (FaasConfig(provider_config={"web": True}), "provider_config"),
    ],
)
def test_a_config_digitalocean_cannot_run_is_refused_before_anything_is_sent(
    api: respx.MockRouter,
    executor: DigitalOceanExecutor,
    package: bytes,
    config: FaasConfig,
    field: str,
) -> None:
    route = api.route().respond(500)

    with pytest.raises(InvalidConfig, match=field):
        executor.deploy_job(3, package, config)

    assert not route.called

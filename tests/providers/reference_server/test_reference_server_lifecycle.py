"""Health counters, persistence across restarts, and the optional bearer API key."""

from __future__ import annotations

import signal
from datetime import datetime

import httpx
import pytest

from tests.processes import wait_until

from ._support import ServerProcess, make_zip, result_json

pytestmark = pytest.mark.integration


def test_health_reports_invocation_counters(
    server: ServerProcess, function_id: str, probe_zip: bytes
) -> None:
    server.deploy(function_id, probe_zip)
    health = server.http.get(f"/api/functions/{function_id}/health")
    assert health.status_code == 200
    assert health.json() == {
        "function_id": function_id,
        "status": "healthy",
        "last_invocation": None,
        "total_invocations": 0,
    }
    for _ in range(3):
        server.invoke(function_id, [1])
    body = server.http.get(f"/api/functions/{function_id}/health").json()
    assert body["total_invocations"] == 3
    assert datetime.fromisoformat(body["last_invocation"]).tzinfo is not None


def test_health_of_an_unknown_function_is_404(server: ServerProcess, function_id: str) -> None:
    response = server.http.get(f"/api/functions/{function_id}/health")
    assert response.status_code == 404
    assert response.json()["function_id"] == function_id


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL])
def test_deployments_survive_a_restart_on_the_same_data_dir(
    start_server, function_id: str, probe_zip: bytes, stop_signal: signal.Signals
) -> None:
    server = start_server()
    config = {"memory_mb": 192, "timeout_secs": 42}
    assert server.deploy(function_id, probe_zip, config).status_code == 200
    before = server.http.get(f"/api/functions/{function_id}").json()
    server.invoke(function_id, [1])
    server.invoke(function_id, [2])
    if stop_signal == signal.SIGKILL:
        # Counters are flushed in batches: wait until the batch holding them is on disk.
        stats = server.data_dir / "functions" / function_id / "stats.json"
        wait_until(lambda: stats.exists() and '"total_invocations": 2' in stats.read_text())

    server.restart(stop_signal)

    after = server.http.get(f"/api/functions/{function_id}")
    assert after.status_code == 200
    assert after.json() == {**before, "endpoint": after.json()["endpoint"]}
    assert after.json()["endpoint"] == f"{server.base_url}/api/functions/{function_id}/invoke"
    assert server.invoke(function_id, [5, 6]).json()["result"] == [5, 6]
    health = server.http.get(f"/api/functions/{function_id}/health").json()
    assert health["total_invocations"] == 3
    assert server.deploy(function_id, probe_zip).status_code == 409


def test_every_endpoint_needs_the_bearer_key_when_one_is_set(
    start_server, function_id: str, probe_zip: bytes
) -> None:
    key = "s3cret-key-value"
    server = start_server(env={"BLUEPRINT_FAAS_SERVER_API_KEY": key}, api_key=key)
    base = f"/api/functions/{function_id}"
    assert server.deploy(function_id, probe_zip).status_code == 200

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": key}):
        with httpx.Client(base_url=server.base_url, headers=headers) as anonymous:
            responses = [
                anonymous.put(base, content=probe_zip),
                anonymous.post(f"{base}/invoke", json={"job_id": 1, "args": []}),
                anonymous.get(f"{base}/health"),
                anonymous.get(base),
                anonymous.delete(base),
                anonymous.post(f"{base}/warm"),
                anonymous.get("/api/unknown-route"),
            ]
        for response in responses:
            assert response.status_code == 401, response.text
            assert response.json()["code"] == "UNAUTHORIZED"
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert key not in response.text

    assert server.http.get(f"{base}/health").status_code == 200
    env = result_json(server.command(function_id, op="whoami"))["env"]
    assert key not in str(env)
    assert server.http.delete(base).status_code == 200
    assert key not in server.log()


def test_the_api_key_flag_works_too(start_server, function_id: str) -> None:
    server = start_server("--api-key", "flag-key", api_key="flag-key")
    package = make_zip({"bootstrap": '#!/bin/sh\necho \'{"result": [], "success": true}\'\n'})
    assert server.deploy(function_id, package).status_code == 200
    assert httpx.get(f"{server.base_url}/api/functions/{function_id}").status_code == 401

"""Invoke: the contract reply, validation of bodies, failures, timeouts, env and payload size."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from tests.processes import wait_until

from ._support import ServerProcess, make_zip, process_gone, result_bytes, result_json

pytestmark = pytest.mark.integration


def test_invoke_runs_the_bootstrap_and_answers_the_contract_reply(
    server: ServerProcess, function_id: str, probe_zip: bytes
) -> None:
    server.deploy(function_id, probe_zip)
    response = server.invoke(function_id, [0, 1, 254, 255], job_id=4294967295)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["job_id"] == 4294967295
    assert body["result"] == [0, 1, 254, 255]
    assert body["success"] is True
    assert isinstance(body["execution_ms"], int) and body["execution_ms"] >= 0
    assert body["cold_start"] is True
    # A real figure: a Python interpreter's peak RSS is megabytes, far from the server's.
    assert body["memory_used_mb"] is None or 1 <= body["memory_used_mb"] < 200


def test_args_may_be_a_json_string_taken_as_utf8_bytes(
    server: ServerProcess, function_id: str, probe_zip: bytes
) -> None:
    server.deploy(function_id, probe_zip)
    assert result_bytes(server.invoke(function_id, "héllo")) == "héllo".encode()
    assert server.invoke(function_id, "").json()["result"] == []


def test_a_string_result_from_the_bootstrap_is_returned_as_bytes(
    server: ServerProcess, function_id: str, probe_zip: bytes
) -> None:
    server.deploy(function_id, probe_zip)
    response = server.command(function_id, op="string_result", text="ok ✓")
    assert response.status_code == 200, response.text
    assert result_bytes(response) == "ok ✓".encode()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"args": []}',
        b'{"job_id": 1}',
        b'{"job_id": -1, "args": []}',
        b'{"job_id": 4294967296, "args": []}',
        b'{"job_id": "1", "args": []}',
        b'{"job_id": 1.5, "args": []}',
        b'{"job_id": true, "args": []}',
        b'{"job_id": null, "args": []}',
        b'{"job_id": 1, "args": [256]}',
        b'{"job_id": 1, "args": [-1]}',
        b'{"job_id": 1, "args": [1.0]}',
        b'{"job_id": 1, "args": [true]}',
        b'{"job_id": 1, "args": ["1"]}',
        b'{"job_id": 1, "args": null}',
        b'{"job_id": 1, "args": {"0": 1}}',
        b'{"job_id": 1, "args": [], "extra": 1}',
    ],
)
def test_a_malformed_invoke_body_is_400_and_runs_nothing(
    server: ServerProcess, function_id: str, probe_zip: bytes, body: bytes
) -> None:
    server.deploy(function_id, probe_zip)
    response = server.http.post(
        f"/api/functions/{function_id}/invoke",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    reply = response.json()
    assert reply["code"] == "INVALID_INVOKE_REQUEST"
    assert reply["details"]["errors"]
    health = server.http.get(f"/api/functions/{function_id}/health").json()
    assert health["total_invocations"] == 0


def test_invoking_an_unknown_function_is_404(server: ServerProcess, function_id: str) -> None:
    response = server.invoke(function_id, [1])
    assert response.status_code == 404
    assert response.json()["function_id"] == function_id
    assert response.json()["code"] == "FUNCTION_NOT_FOUND"


def test_an_invoke_body_over_the_limit_is_413(start_server, function_id: str, probe_zip) -> None:
    small = start_server("--max-invoke-bytes", "1000")
    small.deploy(function_id, probe_zip)
    response = small.invoke(function_id, [1] * 1000)
    assert response.status_code == 413
    assert response.json()["details"] == {"limit_bytes": 1000}
    assert small.invoke(function_id, [1] * 10).status_code == 200


def _assert_failure(response, code: str) -> dict:
    assert response.status_code == 500, response.text
    body = response.json()
    assert (body["job_id"], body["result"], body["success"], body["code"]) == (7, [], False, code)
    assert isinstance(body["error"], str) and body["error"]
    return body


def test_success_false_from_the_function_is_a_500_with_its_error(
    server: ServerProcess, function_id: str, probe_zip: bytes
) -> None:
    server.deploy(function_id, probe_zip)
    body = _assert_failure(server.command(function_id, op="fail", error="boom"), "FUNCTION_ERROR")
    assert body["error"] == "boom"


def test_a_non_zero_exit_is_a_500_that_carries_stderr(
    server: ServerProcess, function_id: str, probe_zip: bytes
) -> None:
    server.deploy(function_id, probe_zip)
    body = _assert_failure(server.command(function_id, op="exit", status=3), "FUNCTION_CRASHED")
    assert "status 3" in body["error"] and "exiting on purpose" in body["error"]


def test_output_that_is_not_a_reply_object_is_a_500(
    server: ServerProcess, function_id: str, probe_zip: bytes
) -> None:
    server.deploy(function_id, probe_zip)
    _assert_failure(server.command(function_id, op="garbage"), "INVALID_OUTPUT")


def test_a_bootstrap_that_cannot_exec_is_a_500(server: ServerProcess, function_id: str) -> None:
    server.deploy(function_id, make_zip({"bootstrap": "no shebang, not a binary"}))
    _assert_failure(server.invoke(function_id, [1]), "FUNCTION_CRASHED")


def test_a_timeout_kills_the_whole_process_group(
    server: ServerProcess, function_id: str, out_dir: Path
) -> None:
    script = (
        "#!/bin/sh\n"
        'echo $$ > "$OUT_DIR/leader.pid"\n'
        "sleep 600 &\n"
        'echo $! > "$OUT_DIR/child.pid"\n'
        "wait\n"
    )
    config = {"timeout_secs": 1, "env_vars": {"OUT_DIR": str(out_dir)}}
    server.deploy(function_id, make_zip({"bootstrap": script}), config)
    body = _assert_failure(server.invoke(function_id, [1]), "FUNCTION_TIMEOUT")
    assert "timed out after 1 s" in body["error"]
    assert body["execution_ms"] >= 1000
    for name in ("leader.pid", "child.pid"):
        pid = int((out_dir / name).read_text())
        wait_until(functools.partial(process_gone, pid), timeout_s=30, what=f"{name} to die")


def test_env_vars_reach_the_process_but_the_server_environment_does_not(
    start_server, function_id: str, probe_zip: bytes
) -> None:
    secret_server = start_server(env={"BLUEPRINT_FAAS_SERVER_API_KEY": "", "LEAKY": "server"})
    config = {"memory_mb": 128, "env_vars": {"GREETING": "hi there", "PATH": "/usr/bin:/bin"}}
    secret_server.deploy(function_id, probe_zip, config)
    answer = result_json(secret_server.command(function_id, op="whoami"))
    env = answer["env"]
    assert env["GREETING"] == "hi there"
    assert env["PATH"] == "/usr/bin:/bin"
    assert env["BLUEPRINT_FUNCTION_ID"] == function_id
    assert "LEAKY" not in env and "BLUEPRINT_FAAS_SERVER_API_KEY" not in env
    assert answer["cwd"] == str(
        secret_server.data_dir.resolve() / "functions" / function_id / "code"
    )


def test_memory_mb_limits_what_the_bootstrap_can_allocate(
    server: ServerProcess, function_id: str, probe_zip: bytes
) -> None:
    server.deploy(function_id, probe_zip, {"memory_mb": 128})
    small = server.command(function_id, op="alloc", mb=16)
    assert small.status_code == 200, small.text
    assert small.json()["memory_used_mb"] is None or small.json()["memory_used_mb"] >= 16
    _assert_failure(server.command(function_id, op="alloc", mb=400), "FUNCTION_CRASHED")


def test_a_five_megabyte_payload_round_trips(
    server: ServerProcess, function_id: str, probe_zip: bytes
) -> None:
    server.deploy(function_id, probe_zip, {"memory_mb": 2048})
    payload = bytes(range(256)) * (5 * 1024 * 1024 // 256)
    response = server.http.post(
        f"/api/functions/{function_id}/invoke",
        content=json.dumps({"job_id": 1, "args": list(payload)}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text[:500]
    assert bytes(response.json()["result"]) == payload

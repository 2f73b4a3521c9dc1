"""warm: real pre-started processes, served from the pool, refilled, and killed when idle."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from tests.processes import wait_until

from ._support import ServerProcess, process_gone, result_json

pytestmark = pytest.mark.integration


def _started_pids(out_dir: Path) -> set[int]:
    return {int(path.name.split("-")[1]) for path in out_dir.glob("started-*")}


def _deploy_probe(
    server: ServerProcess,
    function_id: str,
    probe_zip: bytes,
    out_dir: Path,
    max_concurrency: int = 10,
) -> None:
    config = {"max_concurrency": max_concurrency, "env_vars": {"OUT_DIR": str(out_dir)}}
    assert server.deploy(function_id, probe_zip, config).status_code == 200


def test_warm_prestarts_processes_that_the_next_invocations_use(
    server: ServerProcess, function_id: str, probe_zip: bytes, out_dir: Path
) -> None:
    _deploy_probe(server, function_id, probe_zip, out_dir)
    response = server.http.post(f"/api/functions/{function_id}/warm", params={"instances": 3})
    assert response.status_code == 200
    assert response.json() == {"function_id": function_id, "status": "warm", "instances_warmed": 3}
    # The processes exist before any invocation: each wrote its file at start-up.
    wait_until(lambda: len(_started_pids(out_dir)) == 3, what="three warm instances")
    prestarted = _started_pids(out_dir)

    reply = server.command(function_id, op="whoami")
    assert reply.status_code == 200, reply.text
    assert reply.json()["cold_start"] is False
    assert result_json(reply)["pid"] in prestarted

    # The pool is refilled in the background to keep three instances.
    wait_until(lambda: len(_started_pids(out_dir)) == 4, what="a refill instance")


def test_warm_defaults_to_one_instance_and_is_capped_by_max_concurrency(
    server: ServerProcess, function_id: str, probe_zip: bytes, out_dir: Path
) -> None:
    _deploy_probe(server, function_id, probe_zip, out_dir, max_concurrency=2)
    default = server.http.post(f"/api/functions/{function_id}/warm")
    assert default.json()["instances_warmed"] == 1
    capped = server.http.post(f"/api/functions/{function_id}/warm", params={"instances": 50})
    assert capped.json()["instances_warmed"] == 2
    wait_until(lambda: len(_started_pids(out_dir)) == 2, what="two warm instances")
    none = server.http.post(f"/api/functions/{function_id}/warm", params={"instances": 0})
    assert none.json()["instances_warmed"] == 0
    for pid in _started_pids(out_dir):
        wait_until(functools.partial(process_gone, pid), what=f"warm instance {pid} to stop")
    assert server.command(function_id, op="whoami").json()["cold_start"] is True


@pytest.mark.parametrize("value", ["-1", "x", "1.5", "1001", ""])
def test_a_bad_instances_parameter_is_400(
    server: ServerProcess, function_id: str, probe_zip: bytes, value: str
) -> None:
    server.deploy(function_id, probe_zip)
    response = server.http.post(f"/api/functions/{function_id}/warm", params={"instances": value})
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_PARAMETER"


def test_warm_of_an_unknown_function_is_404(server: ServerProcess, function_id: str) -> None:
    response = server.http.post(f"/api/functions/{function_id}/warm")
    assert response.status_code == 404
    assert response.json()["function_id"] == function_id


def test_delete_kills_the_warm_instances(
    server: ServerProcess, function_id: str, probe_zip: bytes, out_dir: Path
) -> None:
    _deploy_probe(server, function_id, probe_zip, out_dir)
    server.http.post(f"/api/functions/{function_id}/warm", params={"instances": 2})
    wait_until(lambda: len(_started_pids(out_dir)) == 2, what="two warm instances")
    assert server.http.delete(f"/api/functions/{function_id}").status_code == 200
    for pid in _started_pids(out_dir):
        wait_until(functools.partial(process_gone, pid), what=f"warm instance {pid} to stop")


def test_unused_warm_instances_are_killed_after_the_idle_ttl(
    start_server, function_id: str, probe_zip: bytes, out_dir: Path
) -> None:
    server = start_server("--warm-idle-ttl-s", "1")
    _deploy_probe(server, function_id, probe_zip, out_dir)
    assert server.http.post(f"/api/functions/{function_id}/warm").json()["instances_warmed"] == 1
    wait_until(lambda: len(_started_pids(out_dir)) == 1, what="a warm instance")
    (pid,) = _started_pids(out_dir)
    wait_until(lambda: process_gone(pid), timeout_s=30, what="the idle instance to be killed")
    # With the pool gone, the next invocation is a cold start again.
    assert server.command(function_id, op="whoami").json()["cold_start"] is True


def test_health_is_503_and_warm_fails_when_the_bootstrap_cannot_run(
    server: ServerProcess, function_id: str, probe_zip: bytes
) -> None:
    server.deploy(function_id, probe_zip)
    assert server.http.get(f"/api/functions/{function_id}/health").status_code == 200
    bootstrap = server.data_dir / "functions" / function_id / "code" / "bootstrap"
    bootstrap.chmod(0o644)
    health = server.http.get(f"/api/functions/{function_id}/health")
    assert health.status_code == 503
    assert health.json()["code"] == "FUNCTION_UNHEALTHY"
    assert set(health.json()) == {"error", "code", "details"}
    warm = server.http.post(f"/api/functions/{function_id}/warm")
    assert warm.status_code == 503
    assert warm.json()["code"] == "FUNCTION_UNHEALTHY"

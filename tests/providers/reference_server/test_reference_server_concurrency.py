"""max_concurrency: extra invocations queue in order, a full queue answers 429, 100 run at once.

The blocking bootstrap takes a shared flock on a gate file the test holds exclusively, so the
test decides when invocations finish, and each writes `running-<pid>` into $OUT_DIR once it
runs. No sleeps: every wait is on one of those conditions.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

import httpx
import pytest

from tests.processes import wait_until

from ._support import FileGate, ServerProcess, make_zip

pytestmark = pytest.mark.integration

_BLOCKING_BOOTSTRAP = """#!/bin/sh
cat > /dev/null
echo $$ > "$OUT_DIR/running-$$"
flock -s "$GATE" true
echo '{"result": [1], "success": true}'
"""


def _deploy_blocking(
    server: ServerProcess, function_id: str, out_dir: Path, gate: FileGate, max_concurrency: int
) -> None:
    config = {
        "max_concurrency": max_concurrency,
        "env_vars": {"OUT_DIR": str(out_dir), "GATE": str(gate.path)},
    }
    response = server.deploy(function_id, make_zip({"bootstrap": _BLOCKING_BOOTSTRAP}), config)
    assert response.status_code == 200, response.text


def _running(out_dir: Path) -> int:
    return len(list(out_dir.glob("running-*")))


def test_invocations_past_max_concurrency_wait_in_the_queue_then_all_succeed(
    server: ServerProcess, function_id: str, out_dir: Path, gate: FileGate
) -> None:
    _deploy_blocking(server, function_id, out_dir, gate, max_concurrency=2)
    with ThreadPoolExecutor(6) as pool:
        calls = [pool.submit(server.invoke, function_id, [i]) for i in range(6)]
        wait_until(lambda: _running(out_dir) == 2, what="two running invocations")
        # The other four are queued: none may have started or been answered.
        assert _running(out_dir) == 2
        assert not any(call.done() for call in calls)
        gate.open()
        statuses = [call.result().status_code for call in calls]
    assert statuses == [200] * 6
    assert _running(out_dir) == 6


def test_a_full_queue_answers_429_with_retry_after(
    start_server, function_id: str, out_dir: Path, gate: FileGate
) -> None:
    server = start_server("--max-queued-per-function", "1")
    _deploy_blocking(server, function_id, out_dir, gate, max_concurrency=2)
    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(server.invoke, function_id, [i]) for i in range(2)]
        wait_until(lambda: _running(out_dir) == 2, what="two running invocations")
        extra: list[Future[httpx.Response]] = [
            pool.submit(server.invoke, function_id, [i]) for i in range(2)
        ]
        # One of the two extras takes the single queue place; the other is refused at once.
        done, _ = wait(extra, timeout=60, return_when="FIRST_COMPLETED")
        assert done, "no extra invocation was answered"
        refused = done.pop().result()
        assert refused.status_code == 429, refused.text
        assert refused.headers["Retry-After"] == "1"
        body = refused.json()
        assert body["code"] == "THROTTLED"
        assert body["details"] == {"max_concurrency": 2, "max_queued": 1}
        gate.open()
        statuses = sorted(call.result().status_code for call in [*running, *extra])
    assert statuses == [200, 200, 200, 429]


def test_a_hundred_concurrent_invocations_are_accepted_and_run_together(
    server: ServerProcess, function_id: str, out_dir: Path, gate: FileGate
) -> None:
    _deploy_blocking(server, function_id, out_dir, gate, max_concurrency=100)
    with ThreadPoolExecutor(100) as pool:
        calls = [pool.submit(server.invoke, function_id, [1]) for _ in range(100)]
        wait_until(lambda: _running(out_dir) == 100, timeout_s=120, what="100 running")
        gate.open()
        bodies = [call.result().json() for call in calls]
    assert all(body["success"] for body in bodies), [b for b in bodies if not b["success"]][:3]

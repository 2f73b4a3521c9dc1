"""How a bootstrap's process ends: reply before exit, client gone, shutdown, server killed.

Bootstraps write their pid into $OUT_DIR and wait on a gate file the test holds, so the test
decides when they go on; every wait is a condition with a deadline, never a sleep.
"""

from __future__ import annotations

import functools
import signal
from pathlib import Path

import pytest

from tests.processes import wait_until

from ._support import FileGate, RawInvocation, ServerProcess, make_zip, process_gone

pytestmark = pytest.mark.integration

_GONE_DEADLINE_S = 15.0

# Replies, closes its stdout, then lingers until the gate opens and exits with $EXIT_STATUS.
_LINGERING_BOOTSTRAP = """#!/bin/sh
cat > /dev/null
echo $$ > "$OUT_DIR/running-$$"
echo '{"result": [1], "success": true}'
exec 1>&-
flock -s "$GATE" true
exit "${EXIT_STATUS:-0}"
"""

# Runs until killed (far longer than any deadline here), with a child in its group.
_SLEEPING_BOOTSTRAP = """#!/bin/sh
cat > /dev/null
sleep 600 &
echo $! > "$OUT_DIR/child-$$"
echo $$ > "$OUT_DIR/running-$$"
wait
"""

# Waits on the gate before replying (a slot holder the test releases).
_BLOCKING_BOOTSTRAP = """#!/bin/sh
cat > /dev/null
echo $$ > "$OUT_DIR/running-$$"
flock -s "$GATE" true
echo '{"result": [1], "success": true}'
"""


def _deploy(
    server: ServerProcess,
    function_id: str,
    script: str,
    out_dir: Path,
    gate: FileGate,
    *,
    max_concurrency: int = 10,
    exit_status: int = 0,
) -> None:
    env = {"OUT_DIR": str(out_dir), "GATE": str(gate.path), "EXIT_STATUS": str(exit_status)}
    full = {"timeout_secs": 300, "max_concurrency": max_concurrency, "env_vars": env}
    response = server.deploy(function_id, make_zip({"bootstrap": script}), full)
    assert response.status_code == 200, response.text


def _pids(out_dir: Path, prefix: str = "running") -> list[int]:
    return [int(path.read_text()) for path in sorted(out_dir.glob(f"{prefix}-*"))]


def _wait_all_gone(pids: list[int]) -> None:
    for pid in pids:
        wait_until(
            functools.partial(process_gone, pid), timeout_s=_GONE_DEADLINE_S, what=f"{pid} gone"
        )


def test_the_reply_comes_at_stdout_eof_and_the_slot_is_held_until_the_process_exits(
    server: ServerProcess, function_id: str, out_dir: Path, gate: FileGate
) -> None:
    _deploy(server, function_id, _LINGERING_BOOTSTRAP, out_dir, gate, max_concurrency=1)

    first = server.invoke(function_id, [1])

    assert first.status_code == 200, first.text
    assert first.json()["result"] == [1]
    (first_pid,) = _pids(out_dir)
    assert not process_gone(first_pid), "the reply waited for the process to exit"
    # max_concurrency=1 still bounds live processes: the next invocation starts only once
    # the first process has exited.
    second = RawInvocation(server, function_id, [2])
    try:
        gate.open()
        wait_until(lambda: len(_pids(out_dir)) == 2, what="the second invocation to start")
        assert process_gone(first_pid)
        assert second.response()[0] == 200
    finally:
        second.close()


def test_a_crash_after_a_complete_reply_is_logged_not_reported(
    start_server, function_id: str, out_dir: Path, gate: FileGate
) -> None:
    server = start_server()
    _deploy(server, function_id, _LINGERING_BOOTSTRAP, out_dir, gate, exit_status=3)

    response = server.invoke(function_id, [1])
    gate.open()

    assert response.status_code == 200, response.text
    assert response.json()["success"] is True
    wait_until(lambda: "exited with status 3 after its reply" in server.log(), what="the log line")


def test_a_client_that_goes_away_gets_its_running_bootstrap_killed(
    server: ServerProcess, function_id: str, out_dir: Path, gate: FileGate
) -> None:
    _deploy(server, function_id, _SLEEPING_BOOTSTRAP, out_dir, gate)
    invocation = RawInvocation(server, function_id, [1])
    wait_until(lambda: len(_pids(out_dir, "child")) == 1, what="the bootstrap to run")

    invocation.close()

    # Far sooner than the function's 300 s timeout: the whole group is killed.
    _wait_all_gone(_pids(out_dir) + _pids(out_dir, "child"))


def test_a_client_that_goes_away_while_queued_leaves_the_queue(
    start_server, function_id: str, out_dir: Path, gate: FileGate
) -> None:
    server = start_server("--max-queued-per-function", "1")
    _deploy(server, function_id, _BLOCKING_BOOTSTRAP, out_dir, gate, max_concurrency=1)
    running = RawInvocation(server, function_id, [1])
    wait_until(lambda: len(_pids(out_dir)) == 1, what="the first invocation to run")
    queued = RawInvocation(server, function_id, [2])
    refused = RawInvocation(server, function_id, [3])
    try:
        # The queue's one place is taken by `queued`, so this one is refused at once.
        assert refused.response()[0] == 429

        queued.close()
        gate.open()

        assert running.response()[0] == 200
        assert server.invoke(function_id, [4]).status_code == 200
        # Had `queued` stayed in the FIFO queue it would have run before the last call.
        assert len(_pids(out_dir)) == 2
    finally:
        for invocation in (running, queued, refused):
            invocation.close()


def test_shutdown_stops_in_flight_invocations_instead_of_waiting_for_them(
    start_server, function_id: str, out_dir: Path, gate: FileGate
) -> None:
    server = start_server()
    _deploy(server, function_id, _SLEEPING_BOOTSTRAP, out_dir, gate, max_concurrency=1)
    running = RawInvocation(server, function_id, [1])
    queued = RawInvocation(server, function_id, [2])
    try:
        wait_until(lambda: len(_pids(out_dir, "child")) == 1, what="the bootstrap to run")
        assert server.process is not None

        server.process.send_signal(signal.SIGTERM)

        # uvicorn re-raises the signal it handled once its graceful shutdown is over.
        assert server.process.wait(timeout=_GONE_DEADLINE_S) in (0, -signal.SIGTERM)
        for invocation in (running, queued):
            status, body = invocation.response()
            assert status == 503, body
            assert body["code"] == "SHUTTING_DOWN"
        _wait_all_gone(_pids(out_dir) + _pids(out_dir, "child"))
    finally:
        running.close()
        queued.close()


def test_warm_instances_end_when_the_server_is_killed(
    start_server, function_id: str, probe_zip: bytes, out_dir: Path
) -> None:
    server = start_server()
    config = {"env_vars": {"OUT_DIR": str(out_dir)}}
    assert server.deploy(function_id, probe_zip, config).status_code == 200
    warmed = server.http.post(f"/api/functions/{function_id}/warm", params={"instances": 2})
    assert warmed.status_code == 200 and warmed.json()["instances_warmed"] == 2
    wait_until(lambda: len(list(out_dir.glob("started-*"))) == 2, what="two warm instances")
    pids = [int(path.name.split("-")[1]) for path in out_dir.glob("started-*")]

    server.stop(signal.SIGKILL)

    # Their stdin's write end died with the server: each reads EOF and ends.
    _wait_all_gone(pids)

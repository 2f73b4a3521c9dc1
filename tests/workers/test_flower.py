"""Flower for real: behind basic auth, it lists our tasks without payloads or metadata values.

A real ``blueprint-faas flower`` process and a real worker sending task events, on this
test's Redis db.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dispatcher import Blueprint, JobCall, Settings
from dispatcher.keys import EXECUTE_TASK, HEALTH_TASK, WARM_TASK
from tests.workers.conftest import (
    ROOT,
    START_TIMEOUT_S,
    StartWorker,
    free_port,
    stop_process,
    wait_until,
)
from tests.workers.test_execute import run_calls

pytestmark = pytest.mark.integration

USER, PASSWORD = "operator", "flower-test-password"
SECRET_METADATA = "tx-0xfeedface-secret"
SECRET_ARGS = b"very-private-payload"
CLI = [sys.executable, "-m", "dispatcher", "flower"]


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    return {**env, **settings.to_env(), "PYTHONPATH": str(ROOT)}


@pytest.fixture
def flower(settings: Settings, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = tmp_path / "flower.log"
    env = {**_env(settings), "FLOWER_BASIC_AUTH": f"{USER}:{PASSWORD}"}
    command = [*CLI, "--app", "tests.workers.apps", "--port", str(port), "--address", "127.0.0.1"]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: _status(f"{url}/api/workers") == 401 or process.poll() is not None,
            START_TIMEOUT_S,
            "Flower",
        )
        assert process.poll() is None, log.read_text()
        yield url
    finally:
        stop_process(process)


def _status(url: str, **kwargs: Any) -> int | None:
    try:
        return httpx.get(url, timeout=2, **kwargs).status_code
    except httpx.HTTPError:
        return None


def test_flower_refuses_to_start_without_basic_auth(settings: Settings) -> None:
    command = [*CLI, "--app", "tests.workers.apps", "--port", str(free_port())]
    done = subprocess.run(
        command, env=_env(settings), cwd=ROOT, capture_output=True, text=True, timeout=60
    )

    assert done.returncode != 0
    assert "--basic-auth" in done.stderr


def test_flower_lists_our_tasks_behind_basic_auth_without_payloads(
    flower: str,
    settings: Settings,
    start_worker: StartWorker,
    blueprint: Blueprint,
) -> None:
    auth = (USER, PASSWORD)
    start_worker(worker_settings=settings.model_copy(update={"send_events": True}))
    wait_until(
        lambda: httpx.get(f"{flower}/api/workers?refresh=1", auth=auth, timeout=10).json(),
        30,
        "Flower to see the worker",
    )
    calls = [
        JobCall(1, (7).to_bytes(8, "big"), metadata={"tx": SECRET_METADATA}),
        JobCall(2, SECRET_ARGS, metadata={"tx": SECRET_METADATA}),
    ]

    results = run_calls(blueprint, calls)
    tasks = wait_until(
        lambda: (
            (found := httpx.get(f"{flower}/api/tasks", auth=auth, timeout=5).json())
            and all(found.get(c.call_id, {}).get("state") == "SUCCESS" for c in calls)
            and found
        ),
        30,
        "Flower to see both tasks succeed",
    )
    workers = httpx.get(f"{flower}/api/workers", auth=auth, timeout=10).json()

    assert all(result.ok for result in results)
    assert _status(f"{flower}/api/tasks") == 401
    assert _status(f"{flower}/api/tasks", auth=(USER, "wrong")) == 401
    assert {task["name"] for task in tasks.values()} == {EXECUTE_TASK}
    shown = tasks[calls[1].call_id]
    assert shown["args"] == "<call job_id=2 args_bytes=20 metadata_keys=['tx']>"
    assert shown["result"].startswith("<result job_id=2 ok=True ran_on=local")
    assert "metadata_keys=['tx']" in shown["result"]
    registered = {name for info in workers.values() for name in info.get("registered", [])}
    assert {EXECUTE_TASK, WARM_TASK, HEALTH_TASK} <= registered
    text = json.dumps(tasks)
    for secret in (SECRET_METADATA, SECRET_ARGS.hex(), "dmVyeS1wcml2YXRl", "secret"):
        assert secret not in text

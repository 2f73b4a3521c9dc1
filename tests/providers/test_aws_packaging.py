"""The Lambda package, run the way Lambda's Python runtime runs it.

Each test unpacks the zip into a folder (Lambda's ``/var/task``) and starts the runtime
stand-in (``_lambda_runtime.py``) there, a separate process that imports the module the
function's ``Handler`` names and calls ``handler(event, context)`` with each event.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from providers.errors import InvalidConfig
from providers.packaging import LAMBDA_HANDLER, WARMUP_REQUEST, build_lambda_package, load_prebuilt
from providers.registry import provider_spec

RUNTIME = Path(__file__).with_name("_lambda_runtime.py")
JOBS = dedent(
    """
    import os

    def double(payload):
        return bytes(value * 2 % 256 for value in payload)

    def divide(payload):
        raise ZeroDivisionError("the job divided by zero")

    def text(payload):
        return "not bytes"

    def environment(payload):
        return os.environ["JOB_MODE"].encode()
    """
)


class Environment:
    """One runtime process over an unpacked package; ``call`` sends one event."""

    def __init__(self, package: bytes, task_dir: Path, env: dict[str, str] | None = None) -> None:
        with zipfile.ZipFile(io.BytesIO(package)) as archive:
            archive.extractall(task_dir)
        self.process = subprocess.Popen(
            [sys.executable, str(RUNTIME), LAMBDA_HANDLER],
            cwd=task_dir,
            env={"PATH": "/usr/bin:/bin", **(env or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        assert json.loads(self.process.stdout.readline()) == {"ready": True}

    def call(self, event: object) -> tuple[bool, Any]:
        """(whether the handler raised, the JSON it returned or the runtime's error body)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        line = json.dumps({"event": event, "request_id": "req-1", "deadline": 2e9})
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()
        reply = json.loads(self.process.stdout.readline())
        return reply["failed"], json.loads(reply["body"])

    def close(self) -> str:
        """Stop the process; return what it wrote on stderr (the function's log)."""
        _, stderr = self.process.communicate(timeout=30)
        return stderr.decode()


@pytest.fixture
def jobs(tmp_path: Path) -> Path:
    source = tmp_path / "src" / "jobs.py"
    source.parent.mkdir()
    source.write_text(JOBS)
    return source


@pytest.fixture
def run(tmp_path: Path, jobs: Path) -> Iterator[Any]:
    started: list[Environment] = []

    def start(function: str, env: dict[str, str] | None = None) -> Environment:
        package = build_lambda_package(f"jobs:{function}", sources=[jobs])
        environment = Environment(package, tmp_path / f"task-{len(started)}", env)
        started.append(environment)
        return environment

    yield start
    for environment in started:
        environment.close()


def test_a_job_request_is_answered_with_the_result_bytes_and_a_fresh_flag(run: Any) -> None:
    environment = run("double")

    first = environment.call({"job_id": 4, "args": [1, 2, 200]})
    second = environment.call({"job_id": 4, "args": [3]})

    assert first[0] is False
    assert first[1]["result"] == [2, 4, 144]
    assert (first[1]["job_id"], first[1]["success"], first[1]["fresh"]) == (4, True, True)
    assert first[1]["handler_ms"] >= 0
    assert second[1]["result"] == [6]
    assert second[1]["fresh"] is False


def test_args_given_as_a_string_are_its_utf8_bytes(run: Any) -> None:
    assert run("double").call({"job_id": 1, "args": "AB"})[1]["result"] == [130, 132]


def test_the_warm_up_event_is_answered_without_running_the_job(run: Any) -> None:
    failed, reply = run("divide").call(WARMUP_REQUEST)

    assert failed is False
    assert reply["warmup"] is True
    assert reply["result"] == []


def test_a_job_that_raises_fails_the_invocation_with_its_own_type_and_message(
    run: Any,
) -> None:
    environment = run("divide")

    failed, body = environment.call({"job_id": 2, "args": [1]})

    assert failed is True
    assert body["errorType"] == "ZeroDivisionError"
    assert body["errorMessage"] == "the job divided by zero"
    assert any("divide" in frame for frame in body["stackTrace"])
    assert "ZeroDivisionError" in environment.close()


def test_a_job_returning_something_other_than_bytes_fails_the_invocation(run: Any) -> None:
    failed, body = run("text").call({"job_id": 3, "args": []})

    assert failed is True
    assert body["errorType"] == "BlueprintRequestError"
    assert body["errorMessage"] == "TypeError: handler must return bytes, got str"


def test_an_event_that_is_not_a_job_request_fails_the_invocation(run: Any) -> None:
    failed, body = run("double").call([1, 2, 3])

    assert failed is True
    assert "a request must be a JSON object" in body["errorMessage"]


def test_a_handler_that_cannot_load_fails_each_invocation_with_the_import_error(
    tmp_path: Path, jobs: Path
) -> None:
    package = build_lambda_package("jobs:missing", sources=[jobs])
    environment = Environment(package, tmp_path / "task")

    failed, body = environment.call({"job_id": 1, "args": []})
    environment.close()

    assert failed is True
    assert body["errorType"] == "AttributeError"


def test_the_function_environment_reaches_the_job(run: Any) -> None:
    reply = run("environment", {"JOB_MODE": "prod"}).call({"job_id": 1, "args": []})[1]

    assert bytes(reply["result"]) == b"prod"


def test_the_package_holds_the_entry_module_the_core_and_the_sources(jobs: Path) -> None:
    package = build_lambda_package("jobs:double", sources=[jobs])

    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        names = sorted(archive.namelist())

    assert names == ["_blueprint_handler.py", "blueprint_lambda.py", "jobs.py"]
    assert LAMBDA_HANDLER == "blueprint_lambda.handler"
    # Reproducible: the same inputs, the same bytes (and the same CodeSha256 on Lambda).
    assert build_lambda_package("jobs:double", sources=[jobs]) == package


def test_the_aws_provider_builds_lambda_packages(jobs: Path) -> None:
    spec = provider_spec("aws")

    assert spec.build_package("jobs:double", sources=[jobs]) == build_lambda_package(
        "jobs:double", sources=[jobs]
    )


def test_a_handler_whose_module_is_not_shipped_is_refused(jobs: Path) -> None:
    with pytest.raises(InvalidConfig, match="'other' is not among the sources"):
        build_lambda_package("other:run", sources=[jobs])


def test_a_prebuilt_zip_is_accepted_as_is(tmp_path: Path, jobs: Path) -> None:
    path = tmp_path / "prebuilt.zip"
    path.write_bytes(build_lambda_package("jobs:double", sources=[jobs]))

    assert load_prebuilt(path) == path.read_bytes()

"""The generated OpenWhisk zip action, run for real the way the Python runtime runs it.

Each test extracts the zip and starts the fake runtime's worker on it (``__main__.py`` loaded as
``main__``, ``main(args)`` called with OpenWhisk-shaped parameters: the request merged over the
action's parameters), in a process with an empty environment.
"""

from __future__ import annotations

import io
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from providers.errors import InvalidConfig
from providers.packaging import (
    ENV_PARAMETER,
    HANDLER_CORE_MODULE,
    WARMUP_REQUEST,
    build_digitalocean_package,
    load_prebuilt,
)
from tests.providers._digitalocean_fake import ask, start_worker

HANDLERS = dedent(
    """
    import os

    AT_IMPORT = os.environ.get("GREETING", "unset")


    def square(payload):
        return bytes(value * value % 256 for value in payload)


    def fail(payload):
        raise ZeroDivisionError("the job divided by zero")


    def env(payload):
        return ("%s|%s" % (AT_IMPORT, os.environ.get(payload.decode(), "unset"))).encode()
    """
)
RUN_TIMEOUT_S = 60.0

pytestmark = pytest.mark.integration


@pytest.fixture
def sources(tmp_path: Path) -> list[Path]:
    source = tmp_path / "jobs.py"
    source.write_text(HANDLERS)
    return [source]


@pytest.fixture
def run_action(tmp_path: Path, sources: list[Path]) -> Iterator[Any]:
    workers: list[subprocess.Popen[str]] = []

    def run(handler: str, *parameters: dict[str, Any]) -> list[Any]:
        """The worker's replies to activations with these ``parameters``."""
        package = build_digitalocean_package(handler, sources=sources)
        directory = tmp_path / f"action-{len(workers)}"
        with zipfile.ZipFile(io.BytesIO(package)) as archive:
            archive.extractall(directory)
        worker = start_worker(directory)
        workers.append(worker)
        return [ask(worker, args, RUN_TIMEOUT_S) for args in parameters]

    yield run
    for worker in workers:
        worker.kill()
        worker.wait()


def test_the_zip_holds_main_the_handler_core_and_the_sources(sources: list[Path]) -> None:
    package = build_digitalocean_package("jobs:square", sources=sources)

    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        names = set(archive.namelist())
        main_source = archive.read("__main__.py").decode()

    assert names == {"__main__.py", f"{HANDLER_CORE_MODULE}.py", "jobs.py"}
    assert "def main(args, context=None):" in main_source
    assert build_digitalocean_package("jobs:square", sources=sources) == package


def test_main_runs_the_handler_on_the_request_and_returns_the_core_reply(run_action: Any) -> None:
    (reply,) = run_action("jobs:square", {"job_id": 4, "args": [2, 3, 16]})

    result = reply["result"]
    assert result["result"] == [4, 9, 0]
    assert result["success"] is True
    assert result["job_id"] == 4
    assert "error" not in result


def test_the_first_call_of_a_container_is_fresh_and_the_next_is_not(run_action: Any) -> None:
    first, second = run_action(
        "jobs:square",
        {"job_id": 1, "args": [1]},
        {"job_id": 1, "args": [1]},
    )

    assert first["result"]["fresh"] is True
    assert second["result"]["fresh"] is False


def test_a_handler_failure_returns_openwhisks_application_error_shape(run_action: Any) -> None:
    (reply,) = run_action("jobs:fail", {"job_id": 2, "args": [1]})

    result = reply["result"]
    assert result["error"] == "ZeroDivisionError: the job divided by zero"
    assert result["success"] is False


def test_a_warmup_is_answered_without_running_the_job(run_action: Any) -> None:
    (reply,) = run_action("jobs:fail", dict(WARMUP_REQUEST))

    assert reply["result"]["warmup"] is True
    assert reply["result"]["success"] is True


def test_env_vars_arrive_as_a_parameter_and_are_exported_before_the_handler_loads(
    run_action: Any,
) -> None:
    parameters = {ENV_PARAMETER: {"GREETING": "hello", "TARGET": "world"}}
    request = {"job_id": 5, "args": list(b"TARGET")}

    (reply,) = run_action("jobs:env", {**parameters, **request})

    assert bytes(reply["result"]["result"]) == b"hello|world"


def test_main_accepts_digitaloceans_event_and_context_form(
    tmp_path: Path, sources: list[Path]
) -> None:
    package = build_digitalocean_package("jobs:square", sources=sources)
    directory = tmp_path / "two-args"
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        archive.extractall(directory)
    probe = dedent(
        f"""
        import importlib.util, json, sys
        sys.path.insert(0, {str(directory)!r})
        spec = importlib.util.spec_from_file_location("main__", {str(directory / "__main__.py")!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(json.dumps(module.main({{"job_id": 1, "args": [3]}}, object())))
        """
    )
    completed = subprocess.run(
        ["python3", "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )

    assert '"result": [9]' in completed.stdout


def test_a_handler_outside_the_sources_is_refused(sources: list[Path]) -> None:
    with pytest.raises(InvalidConfig, match="not among the sources"):
        build_digitalocean_package("elsewhere:run", sources=sources)


def test_a_prebuilt_zip_is_accepted_as_is(tmp_path: Path, sources: list[Path]) -> None:
    built = tmp_path / "action.zip"
    built.write_bytes(build_digitalocean_package("jobs:square", sources=sources))

    assert load_prebuilt(built) == built.read_bytes()

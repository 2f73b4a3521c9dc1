"""The Azure app package, run the way the Functions host runs it: through azure-functions' types.

The generated ``function_app.py`` is imported from the extracted zip; the function it
registered is found through ``FunctionApp.get_functions()`` and called with a real
``func.HttpRequest``; what comes back is a real ``func.HttpResponse``.
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from textwrap import dedent

import azure.functions as func
import pytest
from azure.functions.decorators.http import HttpTrigger

from providers.errors import InvalidConfig
from providers.packaging import HANDLER_CORE_MODULE, WARMUP_REQUEST, load_prebuilt
from providers.packaging.azure import (
    AZURE_FUNCTION_NAME,
    AZURE_FUNCTION_ROUTE,
    build_azure_package,
    function_timeout_text,
)
from providers.registry import provider_spec

HANDLERS = dedent(
    """
    def double(payload):
        print("noise that must not reach the reply")
        return bytes(value * 2 % 256 for value in payload)

    def fail(payload):
        raise ZeroDivisionError("the job divided by zero")
    """
)
_APP_MODULES = ("function_app", HANDLER_CORE_MODULE, "jobs")

CallApp = Callable[[bytes], func.HttpResponse]


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    source = tmp_path / "jobs.py"
    source.write_text(HANDLERS)
    return source


@pytest.fixture
def load_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[bytes], func.Function]]:
    """Extract a package and import its ``function_app``; the one function it registered."""

    def load(package: bytes) -> func.Function:
        app_dir = tmp_path / "wwwroot"
        with zipfile.ZipFile(io.BytesIO(package)) as archive:
            archive.extractall(app_dir)
        monkeypatch.syspath_prepend(str(app_dir))
        import function_app  # type: ignore[import-not-found]

        (function,) = function_app.app.get_functions()
        loaded: func.Function = function
        return loaded

    for name in _APP_MODULES:
        sys.modules.pop(name, None)
    yield load
    for name in _APP_MODULES:
        sys.modules.pop(name, None)


def _request(body: bytes) -> func.HttpRequest:
    return func.HttpRequest(
        method="POST",
        url=f"https://app.example.net/api/{AZURE_FUNCTION_ROUTE}",
        headers={"Content-Type": "application/json"},
        params={},
        route_params={},
        body=body,
    )


def _call(function: func.Function, request: dict[str, object]) -> func.HttpResponse:
    response: func.HttpResponse = function.get_user_function()(
        _request(json.dumps(request).encode())
    )
    return response


def test_the_app_registers_one_post_route_with_function_level_auth(
    sources: Path, load_app: Callable[[bytes], func.Function]
) -> None:
    function = load_app(build_azure_package("jobs:double", sources=[sources]))
    trigger = function.get_trigger()
    assert isinstance(trigger, HttpTrigger)

    assert function.get_function_name() == AZURE_FUNCTION_NAME
    assert trigger.route == AZURE_FUNCTION_ROUTE
    assert [method.value for method in trigger.methods or ()] == ["POST"]
    assert trigger.auth_level is func.AuthLevel.FUNCTION
    # What the host reads from the v2 model: an httpTrigger in, an http $return out.
    bindings = json.loads(function.get_function_json())["bindings"]
    assert {binding["type"] for binding in bindings} == {"httpTrigger", "http"}


def test_a_request_runs_the_handler_and_the_reply_says_fresh_then_warm(
    sources: Path, load_app: Callable[[bytes], func.Function], capsys: pytest.CaptureFixture[str]
) -> None:
    function = load_app(build_azure_package("jobs:double", sources=[sources]))

    first = _call(function, {"job_id": 3, "args": [1, 2, 200]})
    second = _call(function, {"job_id": 3, "args": [5]})

    assert first.status_code == 200
    assert first.mimetype == "application/json"
    reply = json.loads(first.get_body())
    assert reply["result"] == [2, 4, 144]
    assert reply["success"] is True and reply["job_id"] == 3
    assert reply["fresh"] is True
    assert reply["handler_ms"] >= 0
    assert json.loads(second.get_body())["fresh"] is False
    assert "noise" not in first.get_body().decode()


def test_a_handler_failure_is_a_structured_500_reply(
    sources: Path, load_app: Callable[[bytes], func.Function]
) -> None:
    function = load_app(build_azure_package("jobs:fail", sources=[sources]))

    response = _call(function, {"job_id": 1, "args": [1]})

    assert response.status_code == 500
    reply = json.loads(response.get_body())
    assert reply["success"] is False
    assert reply["error"] == "ZeroDivisionError: the job divided by zero"


def test_a_body_that_is_not_json_is_a_structured_failure(
    sources: Path, load_app: Callable[[bytes], func.Function]
) -> None:
    function = load_app(build_azure_package("jobs:double", sources=[sources]))

    response: func.HttpResponse = function.get_user_function()(_request(b"{not json"))

    assert response.status_code == 500
    assert json.loads(response.get_body())["success"] is False


def test_a_warm_up_is_answered_without_running_the_job(
    sources: Path, load_app: Callable[[bytes], func.Function]
) -> None:
    function = load_app(build_azure_package("jobs:fail", sources=[sources]))

    response = _call(function, WARMUP_REQUEST)

    assert response.status_code == 200
    assert json.loads(response.get_body())["warmup"] is True


def test_a_handler_that_cannot_load_fails_at_the_first_request_not_at_import(
    sources: Path, load_app: Callable[[bytes], func.Function]
) -> None:
    function = load_app(build_azure_package("jobs:missing", sources=[sources]))

    response = _call(function, {"job_id": 1, "args": []})

    assert response.status_code == 500
    assert "missing" in json.loads(response.get_body())["error"]


def test_host_json_and_requirements_are_what_the_host_and_a_remote_build_read(
    sources: Path,
) -> None:
    package = build_azure_package(
        "jobs:double", sources=[sources], requirements=["numpy==2.1"], function_timeout_s=200
    )
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        names = set(archive.namelist())
        host = json.loads(archive.read("host.json"))
        requirements = archive.read("requirements.txt").decode().splitlines()

    assert names == {
        "function_app.py",
        "host.json",
        "requirements.txt",
        "jobs.py",
        f"{HANDLER_CORE_MODULE}.py",
    }
    assert host["version"] == "2.0"
    assert host["functionTimeout"] == "00:03:20"
    assert host["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    assert requirements == ["azure-functions", "numpy==2.1"]


def test_vendored_dependencies_ship_in_python_packages(tmp_path: Path, sources: Path) -> None:
    site_packages = tmp_path / ".python_packages" / "lib" / "site-packages" / "dep"
    site_packages.mkdir(parents=True)
    (site_packages / "__init__.py").write_text("VALUE = 1\n")

    package = build_azure_package("jobs:double", sources=[sources, tmp_path / ".python_packages"])

    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        assert ".python_packages/lib/site-packages/dep/__init__.py" in archive.namelist()


def test_the_same_inputs_build_the_same_bytes(sources: Path) -> None:
    assert build_azure_package("jobs:double", sources=[sources]) == build_azure_package(
        "jobs:double", sources=[sources]
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"requirements": ["a\nb"]}, "one non-empty line"),
        ({"function_timeout_s": 0}, "must be positive"),
    ],
)
def test_bad_arguments_are_refused(sources: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidConfig, match=message):
        build_azure_package("jobs:double", sources=[sources], **kwargs)  # type: ignore[arg-type]


def test_a_prebuilt_app_zip_is_accepted_as_is(tmp_path: Path, sources: Path) -> None:
    package = build_azure_package("jobs:double", sources=[sources])
    path = tmp_path / "app.zip"
    path.write_bytes(package)

    assert load_prebuilt(path) == package


def test_the_azure_provider_builds_this_package() -> None:
    assert provider_spec("azure").build_package is build_azure_package


@pytest.mark.parametrize(
    ("seconds", "text"), [(1, "00:00:01"), (230, "00:03:50"), (3600, "01:00:00")]
)
def test_timeouts_are_written_as_host_timespans(seconds: int, text: str) -> None:
    assert function_timeout_text(seconds) == text

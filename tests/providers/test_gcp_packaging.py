"""The Cloud Functions source zip, served by a real functions-framework process."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from textwrap import dedent

import httpx
import pytest

from providers.errors import InvalidConfig
from providers.packaging import (
    ENTRY_POINT,
    HANDLER_CORE_MODULE,
    WARMUP_REQUEST,
    build_gcp_package,
    load_prebuilt,
)
from providers.packaging.gcp import FUNCTIONS_FRAMEWORK_REQUIREMENT
from tests.providers._gcp_platform import serving

pytestmark = pytest.mark.integration

HANDLERS = dedent(
    """
    def shout(payload):
        print("a handler's print goes to the log, not into the reply")
        return payload.upper()


    def crash(payload):
        raise KeyError("missing-key")


    def not_bytes(payload):
        return "text"
    """
)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("src") / "jobs.py"
    path.write_text(HANDLERS)
    return path


Serve = Callable[[str], AbstractContextManager[str]]


@pytest.fixture
def serve(tmp_path: Path, source: Path) -> Serve:
    """Serve ``handler``'s package with functions-framework; the block's value is its URL."""

    def start(handler: str) -> AbstractContextManager[str]:
        return serving(build_gcp_package(handler, sources=[source]), tmp_path / handler)

    return start


def post(url: str, body: object) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        url, content=content, headers={"Content-Type": "application/json"}, timeout=30
    )


def test_the_zip_holds_main_requirements_the_core_and_the_sources(source: Path) -> None:
    package = build_gcp_package("jobs:shout", sources=[source])

    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        names = set(archive.namelist())
        main = archive.read("main.py").decode()
        requirements = archive.read("requirements.txt").decode()

    assert names == {"main.py", "requirements.txt", f"{HANDLER_CORE_MODULE}.py", "jobs.py"}
    assert f"def {ENTRY_POINT}(request):" in main
    assert "@functions_framework.http" in main
    assert requirements == f"{FUNCTIONS_FRAMEWORK_REQUIREMENT}\n"
    assert build_gcp_package("jobs:shout", sources=[source]) == package  # reproducible


def test_a_source_named_main_clashes_with_the_entry_point(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("def run(payload):\n    return payload\n")
    with pytest.raises(InvalidConfig, match=r"'main\.py' clashes"):
        build_gcp_package("main:run", sources=[tmp_path / "main.py"])


def test_a_prebuilt_source_zip_is_taken_as_is(source: Path, tmp_path: Path) -> None:
    built = tmp_path / "prebuilt.zip"
    built.write_bytes(build_gcp_package("jobs:shout", sources=[source]))

    assert load_prebuilt(built) == built.read_bytes()


def test_the_entry_point_answers_with_the_result_fresh_first_and_handler_time(serve: Serve) -> None:
    with serve("jobs:shout") as url:
        first = post(url, {"job_id": 3, "args": list(b"abc")})
        second = post(url, {"job_id": 3, "args": list(b"d")})

    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    reply = first.json()
    assert (reply["job_id"], bytes(reply["result"]), reply["success"]) == (3, b"ABC", True)
    assert reply["fresh"] is True and reply["handler_ms"] >= 0
    assert second.json()["fresh"] is False


def test_a_failing_handler_is_a_500_with_the_cores_json_failure(serve: Serve) -> None:
    with serve("jobs:crash") as url:
        failed = post(url, {"job_id": 4, "args": [1]})
    with serve("jobs:not_bytes") as url:
        wrong_type = post(url, {"job_id": 4, "args": [1]})

    assert failed.status_code == 500
    assert failed.json() == {
        "job_id": 4,
        "result": [],
        "success": False,
        "error": "KeyError: 'missing-key'",
        "fresh": True,
    }
    assert wrong_type.status_code == 500
    assert wrong_type.json()["error"] == "TypeError: handler must return bytes, got str"


def test_a_request_that_is_not_json_is_a_json_failure_not_an_html_page(serve: Serve) -> None:
    with serve("jobs:shout") as url:
        answer = post(url, b"<not json>")

    assert answer.status_code == 500
    assert answer.json()["success"] is False
    assert answer.json()["error"].startswith("JSONDecodeError")


def test_a_warm_up_is_answered_without_running_the_handler(serve: Serve) -> None:
    with serve("jobs:crash") as url:
        warm = post(url, WARMUP_REQUEST)
        after = post(url, {"job_id": 1, "args": []})

    assert warm.status_code == 200
    assert warm.json() == {
        "job_id": None,
        "result": [],
        "success": True,
        "warmup": True,
        "fresh": True,
    }
    # The crashing handler did not run for the warm-up, and the warm-up took the fresh flag.
    assert after.status_code == 500 and after.json()["fresh"] is False


def test_a_handler_that_cannot_load_fails_every_request_with_the_reason(serve: Serve) -> None:
    with serve("jobs:no_such_function") as url:
        answer = post(url, {"job_id": 1, "args": []})

    assert answer.status_code == 500
    assert "AttributeError" in answer.json()["error"]

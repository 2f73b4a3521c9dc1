"""Deployment packages: zip layout, modes, and the built bootstrap actually run."""

from __future__ import annotations

import io
import json
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from textwrap import dedent

import pytest

from providers.errors import InvalidConfig
from providers.packaging import (
    BOOTSTRAP_NAME,
    HANDLER_CORE_MODULE,
    WARMUP_REQUEST,
    build_custom_package,
    build_shell_package,
    load_prebuilt,
)

# The end-of-central-directory record alone: a valid zip with no entries.
EMPTY_ZIP = b"PK\x05\x06" + bytes(18)
HANDLERS = dedent(
    """
    def double(payload):
        print("noise that must not reach the reply")
        return bytes(value * 2 % 256 for value in payload)

    def fail(payload):
        raise ZeroDivisionError("the job divided by zero")

    def text(payload):
        return "not bytes"

    class Jobs:
        @staticmethod
        def reverse(payload):
            return payload[::-1]

    def linger(payload):
        # Keeps the interpreter alive after the reply until the file named by the payload
        # exists, and then writes to fd 1 (which must not fail once stdout is closed).
        import atexit, os, time

        def wait_then_write():
            deadline = time.monotonic() + 30
            while not os.path.exists(payload.decode()) and time.monotonic() < deadline:
                time.sleep(0.01)
            os.write(1, b"late output")

        atexit.register(wait_then_write)
        return b"ok"
    """
)


@pytest.fixture
def handlers(tmp_path: Path) -> Path:
    source = tmp_path / "src" / "handlers.py"
    source.parent.mkdir()
    source.write_text(HANDLERS)
    return source


def _entries(package: bytes) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        return {info.filename: info for info in archive.infolist()}


def _extract(package: bytes, destination: Path) -> Path:
    """Extract like a platform does: the modes come from each entry's external_attr."""
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        archive.extractall(destination)
        for info in archive.infolist():
            (destination / info.filename).chmod(stat.S_IMODE(info.external_attr >> 16))
    return destination


def _run(
    package: bytes, tmp_path: Path, request: object, *, cwd: Path | None = None
) -> tuple[dict[str, object], subprocess.CompletedProcess[bytes]]:
    code_dir = _extract(package, tmp_path / "code")
    stdin = request if isinstance(request, bytes) else json.dumps(request).encode()
    completed = subprocess.run(
        [str(code_dir / BOOTSTRAP_NAME)],
        input=stdin,
        capture_output=True,
        cwd=cwd or tmp_path,
        timeout=30,
        check=False,
    )
    reply: dict[str, object] = json.loads(completed.stdout)
    return reply, completed


def _result_bytes(reply: dict[str, object]) -> bytes:
    result = reply["result"]
    assert isinstance(result, list)
    return bytes(result)


# -- layout -------------------------------------------------------------------------------


def test_the_custom_package_holds_bootstrap_core_and_sources(handlers: Path) -> None:
    entries = _entries(build_custom_package("handlers:double", sources=[handlers]))

    assert sorted(entries) == sorted([BOOTSTRAP_NAME, f"{HANDLER_CORE_MODULE}.py", "handlers.py"])
    assert entries[BOOTSTRAP_NAME].external_attr >> 16 == 0o100755
    assert entries["handlers.py"].external_attr >> 16 == 0o100644
    assert all(info.create_system == 3 for info in entries.values())


def test_the_bootstrap_starts_with_the_interpreter_line(handlers: Path) -> None:
    default = build_custom_package("handlers:double", sources=[handlers])
    custom = build_custom_package("handlers:double", sources=[handlers], python="/opt/py/bin/py")

    with zipfile.ZipFile(io.BytesIO(default)) as archive:
        assert archive.read(BOOTSTRAP_NAME).startswith(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(io.BytesIO(custom)) as archive:
        assert archive.read(BOOTSTRAP_NAME).startswith(b"#!/opt/py/bin/py\n")


def test_the_same_inputs_build_the_same_bytes(handlers: Path) -> None:
    first = build_custom_package("handlers:double", sources=[handlers])
    handlers.touch()

    assert build_custom_package("handlers:double", sources=[handlers]) == first


def test_a_folder_source_ships_as_a_package_without_bytecode(tmp_path: Path) -> None:
    package_dir = tmp_path / "jobs"
    (package_dir / "sub").mkdir(parents=True)
    (package_dir / "__init__.py").write_text("")
    (package_dir / "sub" / "__init__.py").write_text("")
    (package_dir / "sub" / "echo.py").write_text("def run(payload):\n    return payload\n")
    (package_dir / "__pycache__").mkdir()
    (package_dir / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (package_dir / "stale.pyc").write_bytes(b"\0")

    package = build_custom_package("jobs.sub.echo:run", sources=[package_dir])

    assert sorted(_entries(package)) == [
        "_blueprint_handler.py",
        "bootstrap",
        "jobs/__init__.py",
        "jobs/sub/__init__.py",
        "jobs/sub/echo.py",
    ]
    reply, _ = _run(package, tmp_path, {"job_id": 1, "args": [7, 8]})
    assert reply["result"] == [7, 8]


@pytest.mark.parametrize("handler", ["handlers", "handlers:", ":run", "a-b:run", "x:1y", "m:f g"])
def test_a_handler_that_is_not_module_colon_function_is_refused(
    handlers: Path, handler: str
) -> None:
    with pytest.raises(InvalidConfig):
        build_custom_package(handler, sources=[handlers])


def test_a_handler_module_missing_from_the_sources_is_refused(handlers: Path) -> None:
    with pytest.raises(InvalidConfig, match="other"):
        build_custom_package("other:run", sources=[handlers])


def test_a_missing_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="does not exist"):
        build_custom_package("gone:run", sources=[tmp_path / "gone.py"])


def test_a_source_may_not_replace_the_bootstrap(handlers: Path, tmp_path: Path) -> None:
    impostor = tmp_path / BOOTSTRAP_NAME
    impostor.write_text("#!/bin/sh\n")

    with pytest.raises(InvalidConfig, match="clashes"):
        build_custom_package("handlers:double", sources=[handlers, impostor])


def test_the_interpreter_line_must_be_one_line(handlers: Path) -> None:
    with pytest.raises(InvalidConfig):
        build_custom_package("handlers:double", sources=[handlers], python="/bin/py\nrm -rf /")


# -- the built bootstrap, run for real ------------------------------------------------------


def test_the_bootstrap_answers_the_request_on_stdout(handlers: Path, tmp_path: Path) -> None:
    package = build_custom_package("handlers:double", sources=[handlers])

    reply, completed = _run(package, tmp_path, {"job_id": 42, "args": [1, 2, 200]})

    handler_ms = reply.pop("handler_ms")
    assert reply == {"job_id": 42, "result": [2, 4, 144], "success": True, "fresh": True}
    assert isinstance(handler_ms, float) and 0 <= handler_ms < 60_000
    assert completed.returncode == 0
    assert b"noise that must not reach the reply" in completed.stderr


def test_the_bootstrap_runs_from_any_working_directory(handlers: Path, tmp_path: Path) -> None:
    package = build_custom_package("handlers:double", sources=[handlers])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    reply, _ = _run(package, tmp_path, {"job_id": 1, "args": [3]}, cwd=elsewhere)

    assert reply["result"] == [6]


def test_the_bootstrap_takes_args_given_as_a_string(handlers: Path, tmp_path: Path) -> None:
    package = build_custom_package("handlers:Jobs.reverse", sources=[handlers])

    reply, _ = _run(package, tmp_path, {"job_id": 1, "args": "hé"})

    assert _result_bytes(reply) == "hé".encode()[::-1]


def test_the_bootstrap_closes_stdout_right_after_its_reply(handlers: Path, tmp_path: Path) -> None:
    package = build_custom_package("handlers:linger", sources=[handlers])
    code_dir = _extract(package, tmp_path / "code")
    release = tmp_path / "release"
    request = {"job_id": 3, "args": list(str(release).encode())}
    process = subprocess.Popen(
        [str(code_dir / BOOTSTRAP_NAME)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(request).encode())
        process.stdin.close()
        # EOF arrives while the interpreter still runs its exit hooks.
        reply = json.loads(process.stdout.read())
        assert process.poll() is None
        assert reply["result"] == list(b"ok") and reply["success"] is True
        release.touch()
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.wait()


def test_a_handler_exception_becomes_a_failure_reply(handlers: Path, tmp_path: Path) -> None:
    package = build_custom_package("handlers:fail", sources=[handlers])

    reply, completed = _run(package, tmp_path, {"job_id": 5, "args": [1]})

    assert reply == {
        "job_id": 5,
        "result": [],
        "success": False,
        "error": "ZeroDivisionError: the job divided by zero",
        "fresh": True,
    }
    assert completed.returncode == 0
    assert b"Traceback" in completed.stderr


def test_a_handler_that_returns_no_bytes_fails(handlers: Path, tmp_path: Path) -> None:
    package = build_custom_package("handlers:text", sources=[handlers])

    reply, _ = _run(package, tmp_path, {"job_id": 5, "args": [1]})

    assert reply["success"] is False
    assert "must return bytes, got str" in str(reply["error"])


def test_a_handler_that_cannot_be_loaded_fails_the_request(handlers: Path, tmp_path: Path) -> None:
    package = build_custom_package("handlers:missing", sources=[handlers])

    reply, _ = _run(package, tmp_path, {"job_id": 5, "args": [1]})

    assert reply["success"] is False
    assert str(reply["error"]).startswith("AttributeError")


def test_a_malformed_request_fails_the_request(handlers: Path, tmp_path: Path) -> None:
    package = build_custom_package("handlers:double", sources=[handlers])

    reply, _ = _run(package, tmp_path, b"{not json")

    assert reply["success"] is False
    assert reply["job_id"] is None


def test_a_megabyte_payload_round_trips_through_the_bootstrap(
    handlers: Path, tmp_path: Path
) -> None:
    package = build_custom_package("handlers:Jobs.reverse", sources=[handlers])
    payload = bytes(range(256)) * 4096

    reply, _ = _run(package, tmp_path, {"job_id": 1, "args": list(payload)})

    assert _result_bytes(reply) == payload[::-1]


# -- shell packages and prebuilt zips ------------------------------------------------------


def test_a_shell_package_runs_its_script_under_sh(tmp_path: Path) -> None:
    package = build_shell_package(
        'cat > /dev/null\necho \'{"result": [111, 107], "success": true}\''
    )

    entries = _entries(package)
    reply, _ = _run(package, tmp_path, {"job_id": 1, "args": []})

    assert list(entries) == [BOOTSTRAP_NAME]
    assert entries[BOOTSTRAP_NAME].external_attr >> 16 == 0o100755
    assert reply == {"result": [111, 107], "success": True}


def test_a_shell_script_keeps_its_own_interpreter_line() -> None:
    package = build_shell_package("#!/bin/bash\necho '{}'\n")

    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        assert archive.read(BOOTSTRAP_NAME) == b"#!/bin/bash\necho '{}'\n"


def test_a_prebuilt_zip_is_returned_as_is(tmp_path: Path) -> None:
    path = tmp_path / "prebuilt.zip"
    path.write_bytes(build_shell_package("echo '{}'"))

    assert load_prebuilt(path) == path.read_bytes()


def _zip_with(name: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, b"x")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a zip at all",
        _zip_with("../escape"),
        _zip_with("/etc/passwd"),
        _zip_with("a\\..\\b"),
        EMPTY_ZIP,
    ],
)
def test_a_prebuilt_zip_that_is_broken_or_unsafe_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "prebuilt.zip"
    path.write_bytes(content)

    with pytest.raises(InvalidConfig):
        load_prebuilt(path)


def test_a_missing_prebuilt_zip_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="cannot read"):
        load_prebuilt(tmp_path / "nope.zip")


def test_the_core_answers_a_warm_up_without_running_the_job_and_says_when_it_was_fresh(
    handlers: Path, tmp_path: Path
) -> None:
    package = build_custom_package("handlers:fail", sources=[handlers])
    code_dir = _extract(package, tmp_path / "core")
    # One process, three requests: only the first finds the process fresh.
    script = (
        "import json, sys\n"
        f"import {HANDLER_CORE_MODULE} as core\n"
        "handler, error = core.try_load_handler('handlers:fail')\n"
        f"print(core.answer_request(handler, error, {WARMUP_REQUEST!r}))\n"
        'print(core.answer(handler, error, b\'{"job_id": 1, "args": [1]}\'))\n'
        "print(core.answer(handler, error, b'not json'))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=code_dir, capture_output=True, check=True
    )
    warm_up, failed, malformed = map(json.loads, completed.stdout.splitlines())

    assert warm_up == {
        "job_id": None,
        "result": [],
        "success": True,
        "warmup": True,
        "fresh": True,
    }
    assert failed["success"] is False and "ZeroDivisionError" in failed["error"]
    assert failed["fresh"] is False
    assert malformed["success"] is False and malformed["fresh"] is False


def test_the_core_tells_an_adapter_whether_its_reply_is_a_failure(
    handlers: Path, tmp_path: Path
) -> None:
    package = build_custom_package("handlers:double", sources=[handlers])
    code_dir = _extract(package, tmp_path / "core")
    script = (
        "import json\n"
        f"import {HANDLER_CORE_MODULE} as core\n"
        "handler, error = core.try_load_handler('handlers:double')\n"
        "for raw in (b'{\"job_id\": 1, \"args\": [3]}', b'{\"warmup\": true}', b'[1]', b'{'):\n"
        "    reply, ok = core.answer_with_outcome(handler, error, raw)\n"
        "    print(json.dumps([json.loads(reply)['success'], ok]))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=code_dir, capture_output=True, check=True
    )

    # Success and warm-up are ok; a request that is not an object, or not JSON, is not.
    # (The handler prints a line of its own, which is not an outcome.)
    outcomes = [json.loads(line) for line in completed.stdout.splitlines() if line[:1] == b"["]
    assert outcomes == [[True, True], [True, True], [False, False], [False, False]]

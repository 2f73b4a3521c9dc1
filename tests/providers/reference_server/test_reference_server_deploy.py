"""Deploy, describe and delete: contract shapes, validation, 409 races and package safety."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import struct
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ._support import PROBE_BOOTSTRAP, ServerProcess, config_header, make_zip

pytestmark = pytest.mark.integration


def _assert_error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["details"], dict)
    return body


def test_deploy_answers_the_deployment_record_with_an_endpoint_from_the_request_url(
    server: ServerProcess, function_id: str, probe_zip: bytes
) -> None:
    config = {"memory_mb": 256, "timeout_secs": 30, "max_concurrency": 3, "env_vars": {"A": "b"}}
    response = server.deploy(function_id, probe_zip, config)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "function_id": function_id,
        "endpoint": f"{server.base_url}/api/functions/{function_id}/invoke",
        "status": "deployed",
        "cold_start_ms": response.json()["cold_start_ms"],
        "memory_mb": 256,
        "timeout_secs": 30,
        "max_concurrency": 3,
    }
    assert isinstance(response.json()["cold_start_ms"], int)

    other_host = server.http.get(
        f"/api/functions/{function_id}", headers={"Host": f"localhost:{server.port}"}
    )
    assert other_host.json()["endpoint"] == (
        f"http://localhost:{server.port}/api/functions/{function_id}/invoke"
    )


def test_get_adds_deployed_at_and_binary_size(
    server: ServerProcess, function_id: str, probe_zip: bytes
) -> None:
    server.deploy(function_id, probe_zip)
    body = server.http.get(f"/api/functions/{function_id}").json()
    assert body["binary_size_bytes"] == len(probe_zip)
    assert body["deployed_at"].endswith("Z") and "T" in body["deployed_at"]
    assert (body["memory_mb"], body["timeout_secs"], body["status"]) == (512, 300, "deployed")
    assert "env_vars" not in body


def test_deploying_an_existing_id_is_409_with_the_function_id(
    server: ServerProcess, function_id: str, probe_zip: bytes
) -> None:
    assert server.deploy(function_id, probe_zip).status_code == 200
    body = _assert_error(server.deploy(function_id, probe_zip), 409, "FUNCTION_EXISTS")
    assert body["function_id"] == function_id


def test_concurrent_deploys_of_one_id_let_exactly_one_win(
    server: ServerProcess, function_id: str, probe_zip: bytes
) -> None:
    with ThreadPoolExecutor(16) as pool:
        statuses = list(
            pool.map(lambda _: server.deploy(function_id, probe_zip).status_code, range(16))
        )
    assert sorted(statuses) == [200] + [409] * 15
    functions = server.data_dir / "functions"
    assert [path.name for path in functions.iterdir()].count(function_id) == 1
    assert list((server.data_dir / ".staging").iterdir()) == []


@pytest.mark.parametrize(
    "bad_id",
    [
        "%2E%2E",
        "%2E",
        ".hidden",
        "-dash",
        "_under",
        "a" * 64,
        "sp%20ace",
        "semi;colon",
        "uni%C3%A9",
    ],
)
def test_unsafe_function_ids_are_400_on_every_endpoint(
    server: ServerProcess, bad_id: str, probe_zip: bytes
) -> None:
    base = f"/api/functions/{bad_id}"
    responses = [
        server.http.put(base, content=probe_zip),
        server.http.post(f"{base}/invoke", json={"job_id": 1, "args": []}),
        server.http.get(f"{base}/health"),
        server.http.get(base),
        server.http.delete(base),
        server.http.post(f"{base}/warm"),
    ]
    for response in responses:
        _assert_error(response, 400, "INVALID_FUNCTION_ID")
    assert sorted(path.name for path in server.data_dir.iterdir()) == [
        ".staging",
        ".trash",
        "functions",
    ]


def test_the_longest_allowed_id_works(server: ServerProcess, probe_zip: bytes) -> None:
    longest = "Z" + "a.b_c-" * 10 + "xy"
    assert len(longest) == 63
    assert server.deploy(longest, probe_zip).status_code == 200
    assert server.http.delete(f"/api/functions/{longest}").status_code == 200


def _raw_header(text: bytes) -> str:
    return base64.b64encode(text).decode()


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("not base64!!", "base64"),
        ("YWJ", "base64"),
        (_raw_header(b"{not json"), "json"),
        (_raw_header(b"\xff\xfe"), "json"),
        (_raw_header(b"[1, 2]"), "type"),
        (config_header({"memory": 512}), "fields"),
        (config_header({"memory_mb": 64}), "fields"),
        (config_header({"memory_mb": 200}), "fields"),
        (config_header({"memory_mb": 10304}), "fields"),
        (config_header({"memory_mb": "512"}), "fields"),
        (config_header({"memory_mb": 512.0}), "fields"),
        (config_header({"timeout_secs": 0}), "fields"),
        (config_header({"timeout_secs": 901}), "fields"),
        (config_header({"timeout_secs": True}), "fields"),
        (config_header({"max_concurrency": 0}), "fields"),
        (config_header({"max_concurrency": 1001}), "fields"),
        (config_header({"env_vars": {"1BAD": "x"}}), "fields"),
        (config_header({"env_vars": {"BAD-NAME": "x"}}), "fields"),
        (config_header({"env_vars": {"GOOD": 1}}), "fields"),
        (config_header({"env_vars": {"GOOD": "nul\u0000"}}), "fields"),
        (config_header({"env_vars": ["A=b"]}), "fields"),
    ],
)
def test_a_malformed_config_header_is_400_and_never_replaced_by_defaults(
    server: ServerProcess, function_id: str, probe_zip: bytes, header: str, reason: str
) -> None:
    response = server.http.put(
        f"/api/functions/{function_id}",
        content=probe_zip,
        headers={"X-Blueprint-Config": header},
    )
    body = _assert_error(response, 400, "INVALID_CONFIG")
    assert body["details"]["reason"] == reason  # type: ignore[index]
    assert "nul" not in response.text
    assert server.http.get(f"/api/functions/{function_id}").status_code == 404


def test_config_at_its_limits_is_accepted(
    server: ServerProcess, function_id: str, probe_zip: bytes
) -> None:
    config = {"memory_mb": 10240, "timeout_secs": 900, "max_concurrency": 1000, "env_vars": {}}
    response = server.deploy(function_id, probe_zip, config)
    assert response.status_code == 200, response.text
    assert (response.json()["memory_mb"], response.json()["timeout_secs"]) == (10240, 900)


def test_a_package_without_bootstrap_is_refused(server: ServerProcess, function_id: str) -> None:
    response = server.deploy(function_id, make_zip({"handler.py": "print(1)"}))
    _assert_error(response, 400, "MISSING_BOOTSTRAP")
    nested = server.deploy(function_id, make_zip({"sub/bootstrap": "#!/bin/sh\n"}))
    _assert_error(nested, 400, "MISSING_BOOTSTRAP")
    as_folder = server.deploy(function_id, make_zip({"bootstrap/run": "#!/bin/sh\n"}))
    _assert_error(as_folder, 400, "MISSING_BOOTSTRAP")
    assert server.http.get(f"/api/functions/{function_id}").status_code == 404
    assert list((server.data_dir / ".staging").iterdir()) == []


def test_a_body_that_is_not_a_zip_is_refused(server: ServerProcess, function_id: str) -> None:
    _assert_error(server.deploy(function_id, b"definitely not a zip"), 400, "INVALID_PACKAGE")
    _assert_error(server.deploy(function_id, b""), 400, "INVALID_PACKAGE")


def test_bootstrap_is_made_executable_even_when_the_zip_says_otherwise(
    server: ServerProcess, function_id: str
) -> None:
    package = make_zip({"bootstrap": PROBE_BOOTSTRAP, "data.txt": "x"}, mode=0o644)
    assert server.deploy(function_id, package).status_code == 200
    code = server.data_dir / "functions" / function_id / "code"
    assert os.access(code / "bootstrap", os.X_OK)
    assert not os.access(code / "data.txt", os.X_OK)
    assert server.invoke(function_id, [1, 2]).json()["result"] == [1, 2]


def _zip_with_entry(name: str, *, attr: int = 0o100644 << 16, content: bytes = b"evil") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bootstrap = zipfile.ZipInfo("bootstrap")
        bootstrap.external_attr = 0o100755 << 16
        bundle.writestr(bootstrap, "#!/bin/sh\n")
        info = zipfile.ZipInfo("placeholder")
        info.filename = name  # ZipInfo() would normalise the name; keep it hostile.
        info.external_attr = attr
        bundle.writestr(info, content)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("entry_name", "target_name"),
    [
        ("../evil-{tag}", "evil-{tag}"),
        ("../../evil-{tag}", "evil-{tag}"),
        ("code/../../../evil-{tag}", "evil-{tag}"),
        ("{outside}/evil-{tag}", "evil-{tag}"),
    ],
)
def test_traversal_and_absolute_entries_are_refused_and_write_nothing_outside(
    server: ServerProcess, function_id: str, tmp_path: Path, entry_name: str, target_name: str
) -> None:
    tag = function_id
    name = entry_name.format(tag=tag, outside=str(tmp_path))
    response = server.deploy(function_id, _zip_with_entry(name))
    _assert_error(response, 400, "UNSAFE_PACKAGE_ENTRY")
    target = target_name.format(tag=tag)
    for folder in (
        tmp_path,
        server.data_dir,
        server.data_dir.parent,
        server.data_dir / "functions",
    ):
        assert not (folder / target).exists()
    assert server.http.get(f"/api/functions/{function_id}").status_code == 404


def test_a_symlink_entry_is_refused_and_nothing_is_created(
    server: ServerProcess, function_id: str, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not touch")
    attr = (stat.S_IFLNK | 0o777) << 16
    response = server.deploy(
        function_id, _zip_with_entry("link", attr=attr, content=str(secret).encode())
    )
    body = _assert_error(response, 400, "UNSAFE_PACKAGE_ENTRY")
    assert body["details"]["reason"] == "symbolic link"  # type: ignore[index]
    assert secret.read_text() == "do not touch"
    assert not (server.data_dir / "functions" / function_id).exists()


def test_duplicate_entries_are_refused(server: ServerProcess, function_id: str) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("bootstrap", "#!/bin/sh\n")
        with pytest.warns(UserWarning):
            bundle.writestr("bootstrap", "#!/bin/sh\necho second\n")
    _assert_error(server.deploy(function_id, buffer.getvalue()), 400, "INVALID_PACKAGE")


def test_an_upload_over_the_limit_is_413_with_the_limit_in_details(
    start_server, function_id: str
) -> None:
    small = start_server("--max-upload-bytes", "2000")
    big = make_zip({"bootstrap": "#!/bin/sh\n", "blob": os.urandom(4000)})
    body = _assert_error(small.deploy(function_id, big), 413, "PACKAGE_TOO_LARGE")
    assert body["details"] == {"limit_bytes": 2000, "limit": "upload"}

    def chunked():  # No Content-Length: the limit must hold while streaming.
        for start in range(0, len(big), 500):
            yield big[start : start + 500]

    streamed = small.http.put(f"/api/functions/{function_id}", content=chunked())
    assert streamed.request.headers.get("transfer-encoding") == "chunked"
    _assert_error(streamed, 413, "PACKAGE_TOO_LARGE")
    assert list((small.data_dir / ".staging").iterdir()) == []
    assert small.deploy(function_id, make_zip({"bootstrap": "#!/bin/sh\n"})).status_code == 200


def _lie_about_sizes(package: bytes, declared: int) -> bytes:
    """Rewrite every uncompressed size in the zip's headers to `declared`."""
    data = bytearray(package)
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        position = data.find(signature)
        while position >= 0:
            struct.pack_into("<I", data, position + offset, declared)
            position = data.find(signature, position + 4)
    return bytes(data)


def test_a_zip_bomb_is_413_by_declared_size_and_never_fills_the_disk_by_lying(
    start_server, function_id: str
) -> None:
    small = start_server("--max-uncompressed-bytes", "100000")
    bomb = make_zip({"bootstrap": "#!/bin/sh\n", "zeros": b"\0" * 5_000_000})
    assert len(bomb) < 20_000
    body = _assert_error(small.deploy(function_id, bomb), 413, "PACKAGE_TOO_LARGE")
    assert body["details"]["limit"] == "uncompressed"  # type: ignore[index]

    liar = _lie_about_sizes(bomb, 10)
    response = small.deploy(function_id, liar)
    assert response.status_code in (400, 413), response.text
    assert small.http.get(f"/api/functions/{function_id}").status_code == 404
    assert list((small.data_dir / ".staging").iterdir()) == []


def test_too_many_entries_is_413(start_server, function_id: str) -> None:
    small = start_server("--max-entries", "3")
    files = {"bootstrap": "#!/bin/sh\n", **{f"f{i}": "x" for i in range(5)}}
    _assert_error(small.deploy(function_id, make_zip(files)), 413, "PACKAGE_TOO_LARGE")


def test_delete_removes_only_its_folder_and_then_answers_404(
    server: ServerProcess, function_id: str, probe_zip: bytes, tmp_path: Path
) -> None:
    keep = f"{function_id}-keep"
    assert server.deploy(function_id, probe_zip).status_code == 200
    assert server.deploy(keep, probe_zip).status_code == 200
    sentinel_inside = server.data_dir / "operator-notes.txt"
    sentinel_inside.write_text("keep")
    sentinel_outside = server.data_dir.parent / "outside.txt"
    sentinel_outside.write_text("keep")

    response = server.http.delete(f"/api/functions/{function_id}")
    assert response.status_code == 200
    assert response.json() == {"function_id": function_id, "status": "deleted"}
    assert not (server.data_dir / "functions" / function_id).exists()
    assert (server.data_dir / "functions" / keep / "code" / "bootstrap").is_file()
    assert sentinel_inside.read_text() == "keep" and sentinel_outside.read_text() == "keep"
    assert list((server.data_dir / ".trash").iterdir()) == []
    assert server.invoke(keep, [9]).json()["result"] == [9]

    for response in (
        server.http.delete(f"/api/functions/{function_id}"),
        server.http.get(f"/api/functions/{function_id}"),
        server.invoke(function_id, [1]),
    ):
        body = _assert_error(response, 404, "FUNCTION_NOT_FOUND")
        assert body["function_id"] == function_id
    # The id is free again.
    assert server.deploy(function_id, probe_zip).status_code == 200


def test_unknown_routes_and_methods_answer_the_contract_error_body(server: ServerProcess) -> None:
    _assert_error(server.http.get("/api/nothing"), 404, "ROUTE_NOT_FOUND")
    _assert_error(server.http.patch("/api/functions/x"), 405, "METHOD_NOT_ALLOWED")
    assert json.loads(server.http.get("/docs").text)["code"] == "ROUTE_NOT_FOUND"

"""``docs/custom-faas-contract.md`` says what the code does: its tables are read and compared.

The routes come from the reference server's own app, the error codes from its enum and from
the literal codes its modules send, the statuses from what the executor's status mapping
really raises. A route, code or status added to the code and not to the page (or left on the
page after leaving the code) fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import httpx
from fastapi.routing import APIRoute

from providers import custom
from providers._http import STATUS_ERRORS, error_for_response
from providers.errors import FaasError, FunctionError
from providers.limits import ProviderLimits
from providers.reference_server import _invoke, _models, create_app
from providers.reference_server._errors import ApiError, ErrorCode

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "docs" / "custom-faas-contract.md").read_text()
SERVER_PACKAGE = ROOT / "providers" / "reference_server"
# Row labels of the status table that stand for every status the table does not list.
_OTHER_5XX = "other 5xx"
_ANY_OTHER = "any other"

Row = dict[str, str]


def _table(heading: str) -> list[Row]:
    """The first table after ``heading``, one dict per row keyed by the header's cells."""
    lines = DOC.splitlines()
    start = lines.index(heading)
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append([cell.strip().replace("`", "") for cell in line.strip("|").split("|")])
        elif rows:
            break
    assert rows, f"no table under {heading!r}"
    header, _separator, *body = rows
    return [dict(zip(header, cells, strict=True)) for cells in body]


def _literal_codes(source: str) -> set[str]:
    """String constants a module puts under ``"code"`` in a dict literal."""
    codes: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                is_code = isinstance(key, ast.Constant) and key.value == "code"
                if is_code and isinstance(value, ast.Constant) and isinstance(value.value, str):
                    codes.add(value.value)
    return codes


def _invocation_failure_codes() -> set[str]:
    """The codes ``_invoke`` passes to ``_failure``; each call must name its code literally."""
    tree = ast.parse(Path(_invoke.__file__).read_text())
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "_failure"
    ]
    assert calls, "_invoke no longer builds failures with _failure: update this test"
    codes: set[str] = set()
    for call in calls:
        code = call.args[1]
        assert isinstance(code, ast.Constant) and isinstance(code.value, str), ast.unparse(call)
        codes.add(code.value)
    return codes


def _raised_for(status: int) -> str:
    request = httpx.Request("GET", "http://platform.test/api/functions/f")
    error = error_for_response(httpx.Response(status, request=request), provider="custom")
    return type(error).__name__


def _status_rows() -> dict[str, Row]:
    return {row["status"]: row for row in _table("### Status codes")}


def test_the_endpoint_table_lists_exactly_the_routes_the_reference_server_serves(
    tmp_path: Path,
) -> None:
    app = create_app(tmp_path / "data")
    served = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    documented = {(row["method"], row["path"]) for row in _table("## Endpoints")}

    assert len(served) == 6
    assert documented == served


def test_the_error_code_table_lists_every_code_the_server_sends_with_its_status() -> None:
    rows = {row["code"]: row for row in _table("### Error codes")}
    literal = set()
    for module in SERVER_PACKAGE.glob("*.py"):
        literal |= _literal_codes(module.read_text())
    sent = {code.value for code in ErrorCode} | literal

    assert set(rows) == sent
    for code in ErrorCode:
        assert rows[code.value]["status"] == str(ApiError(code, "").status), code


def test_the_failure_code_table_lists_every_invocation_failure_and_what_the_executor_raises() -> (
    None
):
    rows = {row["code"]: row for row in _table("### Invocation failure codes")}
    sent = _invocation_failure_codes()

    assert set(rows) == sent
    assert set(custom._FAILURE_CODES) <= set(rows)
    for code, row in rows.items():
        assert row["executor raises"] == custom._FAILURE_CODES.get(code, FunctionError).__name__


def test_the_status_table_covers_every_mapped_and_every_sent_status() -> None:
    documented = {int(status) for status in _status_rows() if status.isdecimal()}
    sent = {ApiError(code, "").status for code in ErrorCode} | {500}  # 500: a failed run

    assert set(STATUS_ERRORS) <= documented
    assert sent <= documented


def test_the_status_table_says_what_the_executor_raises_for_each_status() -> None:
    rows = _status_rows()
    listed = {int(status) for status in rows if status.isdecimal()}
    stand_ins = {
        _OTHER_5XX: next(code for code in range(500, 600) if code not in listed),
        _ANY_OTHER: next(code for code in range(400, 500) if code not in listed),
    }
    assert set(stand_ins) <= set(rows)

    for label, row in rows.items():
        status = int(label) if label.isdecimal() else stand_ins[label]
        assert row["executor raises"] == _raised_for(status), label


def test_the_status_table_names_the_executors_per_call_exceptions() -> None:
    rows = _status_rows()

    for status, override in custom._BAD_REQUEST_ON_DEPLOY.items():
        assert override.__name__ in rows[str(status)]["exceptions"]
    failures: set[type[FaasError]] = {FunctionError, *custom._FAILURE_CODES.values()}
    for failure in failures:
        assert failure.__name__ in rows["500"]["exceptions"]


def test_the_config_header_table_has_the_servers_fields_and_defaults() -> None:
    rows = {row["field"]: row for row in _table("### The `X-Blueprint-Config` header")}
    fields = _models.FunctionConfig.model_fields

    assert f"### The `{custom.CONFIG_HEADER}` header" in DOC.splitlines()
    assert set(rows) == set(fields)
    defaults = _models.FunctionConfig().model_dump()
    for name, row in rows.items():
        expected = "{}" if defaults[name] == {} else str(defaults[name])
        assert row["reference server default"] == expected, name


def test_the_limits_table_names_real_flags_and_real_executor_limits() -> None:
    rows = _table("## Limits")
    flags_source = (SERVER_PACKAGE / "__main__.py").read_text()
    limit_fields = set(ProviderLimits.model_fields)

    for row in rows:
        for flag in re.findall(r"--[a-z-]+", row["changed by"]):
            assert f'"{flag}"' in flags_source, flag
        named = [name.strip() for name in row["executor (LIMITS)"].split(",")]
        assert all(name == "-" or name in limit_fields for name in named), row["limit"]
    assert {name for row in rows for name in row["executor (LIMITS)"].split(", ")} >= {
        "max_package_bytes",
        "max_request_bytes",
        "max_response_bytes",
    }

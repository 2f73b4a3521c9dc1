"""Reply bodies read into pydantic models: a malformed one names its fields and provider."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import BaseModel, ConfigDict

from providers._replies import (
    OptionalText,
    Rfc3339Datetime,
    json_object_or_none,
    parse_reply,
    validate_reply,
)
from providers.errors import SerializationError

PROVIDER = "gcp"
SECRET = "payload-bytes-or-a-secret"


class _Stage(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True)

    name: str
    state: str


class _Operation(BaseModel):
    """A trimmed google.longrunning.Operation, as a GCP provider would declare it."""

    model_config = ConfigDict(strict=True, frozen=True)

    name: str
    done: bool = False
    stages: tuple[_Stage, ...] = ()
    create_time: Rfc3339Datetime | None = None
    note: OptionalText = None


def _reply(content: bytes | str, status: int = 200) -> httpx.Response:
    request = httpx.Request("GET", "https://cloudfunctions.googleapis.com/v2/operations/op-1")
    body = content.encode() if isinstance(content, str) else content
    return httpx.Response(status, content=body, request=request)


def _refused(content: bytes | str) -> SerializationError:
    with pytest.raises(SerializationError) as caught:
        parse_reply(_Operation, _reply(content), provider=PROVIDER)
    return caught.value


def test_a_well_formed_reply_becomes_its_model() -> None:
    body = {
        "name": "operations/op-1",
        "done": True,
        "stages": [{"name": "BUILD", "state": "COMPLETE"}],
        "create_time": "2025-03-01T12:30:00.250Z",
        "unknown": "ignored",
    }

    operation = parse_reply(_Operation, _reply(json.dumps(body)), provider=PROVIDER)

    assert operation.done is True
    assert operation.stages == (_Stage(name="BUILD", state="COMPLETE"),)
    assert operation.create_time == datetime(2025, 3, 1, 12, 30, 0, 250_000, tzinfo=UTC)


def test_a_field_of_the_wrong_type_is_named_with_the_provider_and_the_reply() -> None:
    error = _refused(json.dumps({"name": "op", "done": "yes"}))

    assert error.provider == PROVIDER
    assert error.retryable is False
    assert "from gcp" in error.message
    assert "GET reply (HTTP 200)" in error.message
    assert "'done'" in error.message


def test_a_missing_field_is_named_as_missing() -> None:
    assert "'name' is missing" in _refused("{}").message


def test_a_nested_field_is_named_by_its_path() -> None:
    error = _refused(json.dumps({"name": "op", "stages": [{"name": "BUILD", "state": 3}]}))

    assert "'stages[0].state'" in error.message


@pytest.mark.parametrize(
    ("content", "problem"),
    [("not json", "is not JSON"), ("[1, 2]", "is not a JSON object"), ("", "is not JSON")],
)
def test_a_body_that_is_not_a_json_object_says_so(content: str, problem: str) -> None:
    assert problem in _refused(content).message


@pytest.mark.parametrize("value", ["yesterday", 1_700_000_000, "1700000000"])
def test_a_date_must_be_an_rfc3339_string(value: object) -> None:
    error = _refused(json.dumps({"name": "op", "create_time": value}))

    assert "'create_time' must be an RFC 3339 date" in error.message


def test_numbers_booleans_and_strings_are_strict_as_the_wire_is() -> None:
    assert "'name'" in _refused(json.dumps({"name": 5})).message
    assert "'done'" in _refused(json.dumps({"name": "op", "done": 1})).message


def test_optional_text_of_another_type_is_taken_as_absent() -> None:
    reply = _reply(json.dumps({"name": "op", "note": {"a": 1}}))

    assert parse_reply(_Operation, reply, provider=PROVIDER).note is None


def test_the_message_never_quotes_the_input() -> None:
    error = _refused(json.dumps({"name": ["x", SECRET], "done": SECRET}))

    assert SECRET not in error.message
    assert SECRET not in repr(error)
    assert error.__cause__ is None and error.__suppress_context__


def test_many_bad_fields_are_named_by_the_first_few_and_counted() -> None:
    stages = [{"name": index, "state": "x"} for index in range(10)]

    error = _refused(json.dumps({"name": "op", "stages": stages}))

    assert "'stages[0].name'" in error.message
    assert "and 7 more" in error.message


def test_validate_reply_reads_a_decoded_body_named_by_the_caller() -> None:
    with pytest.raises(SerializationError) as caught:
        validate_reply(_Operation, None, provider="azure", what="the async-operation status")

    message = caught.value.message
    assert message.startswith("the async-operation status from azure is malformed")
    assert "is not a JSON object" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b'{"a": [1, 2]}', {"a": [1, 2]}), (b"[1]", None), (b"nope", None), (b"", None)],
)
def test_json_object_or_none_decodes_only_objects(
    content: bytes, expected: dict[str, object] | None
) -> None:
    assert json_object_or_none(content) == expected

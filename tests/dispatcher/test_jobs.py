"""The job model: validation at construction and a lossless wire form."""

from __future__ import annotations

import pytest

from dispatcher.errors import DecodeError, InvalidJobCall
from dispatcher.jobs import LOCAL, JobCall, JobError, JobResult, ResultStatus
from providers.base import FaasMetrics
from providers.errors import ErrorKind, Throttled


@pytest.mark.parametrize("job_id", [0, 1, 2**32 - 1])
def test_a_call_accepts_every_u32_job_id(job_id: int) -> None:
    assert JobCall(job_id, b"x").job_id == job_id


@pytest.mark.parametrize("job_id", [-1, 2**32, 1.0, "1", True, None])
def test_a_call_refuses_a_job_id_that_is_not_a_u32_int(job_id: object) -> None:
    with pytest.raises(InvalidJobCall, match="job_id"):
        JobCall(job_id, b"x")  # type: ignore[arg-type]


@pytest.mark.parametrize("args", ["text", [1, 2], 7, None])
def test_a_call_refuses_args_that_are_not_bytes(args: object) -> None:
    with pytest.raises(InvalidJobCall, match="args must be bytes"):
        JobCall(0, args)  # type: ignore[arg-type]


def test_a_call_takes_bytearray_and_memoryview_as_bytes() -> None:
    assert JobCall(0, bytearray(b"ab")).args == b"ab"  # type: ignore[arg-type]
    assert JobCall(0, memoryview(b"cd")).args == b"cd"  # type: ignore[arg-type]


def test_each_call_gets_its_own_call_id() -> None:
    assert JobCall(0).call_id != JobCall(0).call_id


def test_a_call_refuses_metadata_with_non_string_keys() -> None:
    with pytest.raises(InvalidJobCall, match="metadata keys"):
        JobCall(0, b"", {1: "x"})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "metadata", [{"when": {1, 2}}, {"ratio": float("nan")}, {"nested": {"raw": b"x"}}]
)
def test_a_call_refuses_metadata_that_is_not_json(metadata: dict[str, object]) -> None:
    with pytest.raises(InvalidJobCall, match="JSON-serialisable"):
        JobCall(1, b"", metadata=metadata)


def test_a_call_keeps_nested_json_metadata() -> None:
    call = JobCall(1, b"", metadata={"block": {"number": 7, "hashes": ["a", "b"]}, "ok": None})
    assert JobCall.from_wire(call.to_wire()).metadata == call.metadata


def test_metadata_cannot_be_changed_after_construction() -> None:
    source = {"block": 7}
    call = JobCall(0, b"", source)
    source["block"] = 8
    assert call.metadata["block"] == 7
    with pytest.raises(TypeError):
        call.metadata["block"] = 9  # type: ignore[index]


def test_a_call_survives_its_wire_form_unchanged() -> None:
    call = JobCall(5, bytes(range(256)), {"block": 12, "tx": "0xabc"})
    wire = call.to_wire()
    assert isinstance(wire["args"], str)
    assert JobCall.from_wire(wire) == call


@pytest.mark.parametrize(
    "wire",
    [
        "not a dict",
        {"args": "", "call_id": "c"},
        {"job_id": 1, "args": "***", "call_id": "c"},
        {"job_id": -3, "args": "", "call_id": "c"},
        {"job_id": 1, "args": 12, "call_id": "c"},
    ],
)
def test_a_malformed_wire_call_raises_decode_error_keeping_the_raw_value(wire: object) -> None:
    with pytest.raises(DecodeError) as caught:
        JobCall.from_wire(wire)
    assert caught.value.raw is wire


def test_a_result_carries_the_calls_ids_and_metadata_back() -> None:
    call = JobCall(3, b"in", {"block": 1})
    metrics = FaasMetrics(total_ms=12.5, execution_ms=4.0, cold_start=True, billed_ms=5)
    result = JobResult.success(call, b"out", ran_on="custom", attempts=2, metrics=metrics)
    assert (result.job_id, result.call_id, dict(result.metadata)) == (3, call.call_id, {"block": 1})
    assert result.status is ResultStatus.OK
    assert JobResult.from_wire(result.to_wire()) == result


def test_a_failed_result_keeps_its_structured_error_over_the_wire() -> None:
    call = JobCall(3, b"in")
    error = JobError.from_faas_error(Throttled("slow down", provider="aws", status=429))
    result = JobResult.failure(call, error, ran_on="aws", attempts=4)
    decoded = JobResult.from_wire(result.to_wire())
    assert decoded == result
    assert decoded.error == JobError(ErrorKind.THROTTLED, "slow down", True, "aws", 429)
    assert decoded.status is ResultStatus.ERROR


def test_a_result_whose_error_kind_is_unknown_is_refused_on_decoding() -> None:
    wire = JobResult.failure(JobCall(3, b"in"), JobError(ErrorKind.TIMEOUT, "late")).to_wire()
    wire["error"]["kind"] = "gremlins"

    with pytest.raises(DecodeError, match="gremlins"):
        JobResult.from_wire(wire)


def test_a_result_cannot_be_ok_and_carry_an_error_or_fail_without_one() -> None:
    with pytest.raises(InvalidJobCall):
        JobResult(0, "c", ok=True, error=JobError(ErrorKind.AUTH, "y"))
    with pytest.raises(InvalidJobCall):
        JobResult(0, "c", ok=False)


def test_a_result_defaults_to_having_run_locally_once() -> None:
    result = JobResult.success(JobCall(0), b"")
    assert (result.ran_on, result.attempts, result.metrics) == (LOCAL, 1, None)


def test_a_malformed_wire_result_raises_decode_error() -> None:
    with pytest.raises(DecodeError):
        JobResult.from_wire({"job_id": 1, "call_id": "c"})

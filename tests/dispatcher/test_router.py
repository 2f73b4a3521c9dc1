"""Router: registration, context passing, errors."""

from __future__ import annotations

import pytest

from dispatcher import InvalidJobCall, JobContext, Router, UnknownJob

CTX = JobContext(job_id=0, call_id="c", metadata={"block": 1})


def test_a_handler_of_one_parameter_gets_the_args_only() -> None:
    router = Router()

    @router.job(0)
    def double(args: bytes) -> bytes:
        return args * 2

    assert router.call(0, b"ab", CTX) == b"abab"
    assert router.job_ids() == [0] and 0 in router and len(router) == 1


def test_a_handler_of_two_parameters_also_gets_the_context() -> None:
    router = Router()
    router.add(7, lambda args, ctx: f"{ctx.metadata['block']}".encode())
    assert router.call(7, b"", CTX) == b"1"


def test_registration_errors_are_invalid_job_calls() -> None:
    router = Router()
    router.add(0, lambda args: args)
    with pytest.raises(InvalidJobCall):
        router.add(0, lambda args: args)
    with pytest.raises(InvalidJobCall):
        router.add(-1, lambda args: args)
    with pytest.raises(InvalidJobCall):
        router.add(1, lambda: b"")


def test_an_unknown_job_and_a_non_bytes_result_are_refused() -> None:
    router = Router()
    router.add(0, lambda args: 42)  # type: ignore[arg-type, return-value]
    with pytest.raises(UnknownJob):
        router.call(1, b"", CTX)
    with pytest.raises(TypeError, match="not bytes"):
        router.call(0, b"", CTX)

"""The run's progress line: what it counts, from sync and async producers."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator

from rich.console import Console

from dispatcher._run_progress import RunProgress
from dispatcher.jobs import JobCall, JobError, JobResult
from providers.errors import ErrorKind


def _terminal() -> tuple[Console, io.StringIO]:
    screen = io.StringIO()
    return Console(file=screen, force_terminal=True, width=160), screen


def _result(call: JobCall, *, ok: bool) -> JobResult:
    if ok:
        return JobResult.success(call, b"", ran_on="local")
    return JobResult.failure(
        call, JobError(ErrorKind.FUNCTION_ERROR, "boom", retryable=False), ran_on="local"
    )


def test_it_counts_calls_taken_and_results_by_outcome() -> None:
    console, screen = _terminal()
    calls = [JobCall(0, bytes([n])) for n in range(3)]
    with RunProgress(console) as progress:
        producer = progress.counted(lambda: calls)()
        assert isinstance(producer, Iterator)
        taken = list(producer)
        progress.record(_result(taken[0], ok=True))
        progress.record(_result(taken[1], ok=False))

    assert taken == calls
    final = screen.getvalue()
    assert "2 of 3 answered" in final and "1 ok" in final and "1 failed" in final
    assert "1 in flight" in final


def test_it_counts_an_async_producer() -> None:
    console, screen = _terminal()

    async def calls() -> AsyncIterator[JobCall]:
        for n in range(2):
            yield JobCall(0, bytes([n]))

    async def drain(progress: RunProgress) -> list[JobCall]:
        producer = progress.counted(calls())()
        assert isinstance(producer, AsyncIterator)
        return [call async for call in producer]

    with RunProgress(console) as progress:
        taken = asyncio.run(drain(progress))

    assert len(taken) == 2
    assert "0 of 2 answered" in screen.getvalue()

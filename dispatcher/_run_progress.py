"""The live progress line of ``blueprint-faas run``: what a run has done so far, on a terminal.

It stands outside the runner, as a producer wrapper that counts the calls taken and a consumer
that counts the results, so the runner has no display code and a run without a terminal pays
nothing for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from dispatcher.jobs import JobCall, JobResult
from dispatcher.runner import Producer

__all__ = ["RunProgress"]

_DESCRIPTION = (
    "{answered} of {submitted} answered · [green]{ok} ok[/green] · [red]{failed} failed[/red]"
    " · {rate:.1f} calls/s · {in_flight} in flight"
)


class RunProgress:
    """Counts a run's calls and results and shows them as a rich progress bar while it runs.

    Use it as a context manager around the run; hand the run :meth:`counted` as its producer
    and :meth:`record` as one of its consumers. Counting is safe from the runner's threads.
    """

    def __init__(self, console: Console) -> None:
        self._lock = threading.Lock()
        self._submitted = self._ok = self._failed = 0
        self._started = time.perf_counter()
        self._progress = Progress(
            SpinnerColumn(),
            BarColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._task = self._progress.add_task(self._describe(), total=None)

    def __enter__(self) -> Self:
        self._started = time.perf_counter()
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._refresh()
        self._progress.stop()

    def counted(self, source: Producer | Callable[[], Producer]) -> Callable[[], Producer]:
        """``source`` as a producer that counts every call the runner takes from it."""

        def producer() -> Producer:
            calls = source
            if callable(calls) and not isinstance(calls, Iterable | AsyncIterable):
                calls = calls()
            if isinstance(calls, AsyncIterable):
                return self._count_async(calls)
            return self._count_sync(calls)

        return producer

    def record(self, result: JobResult) -> None:
        """The consumer: one more answered call."""
        with self._lock:
            if result.ok:
                self._ok += 1
            else:
                self._failed += 1
        self._refresh()

    def _count_sync(self, calls: Iterable[JobCall]) -> Iterator[JobCall]:
        for call in calls:
            self._taken()
            yield call

    async def _count_async(self, calls: AsyncIterable[JobCall]) -> AsyncIterator[JobCall]:
        async for call in calls:
            self._taken()
            yield call

    def _taken(self) -> None:
        with self._lock:
            self._submitted += 1
        self._refresh()

    def _refresh(self) -> None:
        with self._lock:
            description = self._describe()
            answered, submitted = self._ok + self._failed, self._submitted
        self._progress.update(
            self._task, description=description, completed=answered, total=submitted
        )

    def _describe(self) -> str:
        answered = self._ok + self._failed
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        return _DESCRIPTION.format(
            answered=answered,
            submitted=self._submitted,
            ok=self._ok,
            failed=self._failed,
            rate=answered / elapsed,
            in_flight=self._submitted - answered,
        )

"""An app with a producer and consumers, for ``blueprint-faas run --app`` in the tests."""

from __future__ import annotations

from collections.abc import Iterator

from dispatcher import JobCall, JobResult
from tests.workers import apps

received: list[JobResult] = []


def calls() -> Iterator[JobCall]:
    for x in range(5):
        yield JobCall(0, x.to_bytes(8, "big"), metadata={"x": x})


app = apps.build_app()
app.producer = calls
app.consumers = [received.append]

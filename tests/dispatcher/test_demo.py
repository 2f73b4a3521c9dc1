"""The incredible-squaring demo, embedded (no server) and on Redis."""

from __future__ import annotations

import pytest

from dispatcher import Settings
from dispatcher.demo import FAAS_JOB, LOCAL_JOB, run_demo

pytestmark = pytest.mark.integration


def check(results: list, numbers: tuple[int, ...]) -> None:  # type: ignore[type-arg]
    assert len(results) == 2 * len(numbers)
    for result in results:
        assert result.ok, result.error
        assert int.from_bytes(result.body, "big") == result.metadata["x"] ** 2
        assert result.ran_on == {LOCAL_JOB: "local", FAAS_JOB: "custom"}[result.job_id]


def test_the_demo_runs_with_no_broker_configured(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    results = run_demo((3, 2**40), settings=Settings.embedded(tmp_path), out=lines.append)
    check(results, (3, 2**40))
    assert "embedded filesystem transport" in lines[0]
    assert any("ran on custom" in line and "invoke" in line for line in lines)


def test_the_demo_runs_on_redis(redis_url: str) -> None:
    lines: list[str] = []
    results = run_demo((4, 5), settings=Settings.from_redis_url(redis_url), out=lines.append)
    check(results, (4, 5))
    assert "redis://" in lines[0]

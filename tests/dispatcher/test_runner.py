"""The runner against real workers: ordering, consumers, async sources, failures."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from typer.testing import CliRunner

from dispatcher import Blueprint, BlueprintRunner, JobCall, JobResult, Settings, submit
from dispatcher.cli import cli
from dispatcher.keys import job_queue
from providers.errors import ErrorKind
from tests.dispatcher import runnable_app
from tests.workers.conftest import StartWorker

pytestmark = pytest.mark.integration


def sleep_call(ms: int) -> JobCall:
    return JobCall(4, ms.to_bytes(4, "big"), metadata={"ms": ms})


def test_results_arrive_in_completion_order_and_every_consumer_gets_each(
    blueprint: Blueprint, start_worker: StartWorker
) -> None:
    start_worker(pool="threads", concurrency=4, jobs="4")
    first: list[JobResult] = []
    second: list[JobResult] = []
    calls = [sleep_call(600), sleep_call(10)]
    summary = (
        BlueprintRunner.builder(blueprint.settings)
        .app(blueprint)
        .producer(calls)
        .consumer(first.append)
        .consumer(second.append)
        .run()
    )
    assert [r.metadata["ms"] for r in first] == [10, 600]
    assert first == second and summary.succeeded == 2 and summary.submitted == 2


def test_a_consumer_that_raises_does_not_stop_the_run(
    blueprint: Blueprint, start_worker: StartWorker
) -> None:
    start_worker(jobs="0")
    seen: list[JobResult] = []

    def broken(result: JobResult) -> None:
        raise RuntimeError("consumer bug")

    calls = [JobCall(0, (x).to_bytes(8, "big")) for x in range(3)]
    BlueprintRunner.builder(blueprint.settings).app(blueprint).producer(calls).consumer(
        broken
    ).consumer(seen.append).run()
    assert len(seen) == 3


def test_async_producers_and_consumers_run_on_the_callers_loop(
    blueprint: Blueprint, start_worker: StartWorker
) -> None:
    start_worker(jobs="0")
    seen: list[int] = []

    async def produce() -> AsyncIterator[JobCall]:
        for x in range(4):
            await asyncio.sleep(0)
            yield JobCall(0, x.to_bytes(8, "big"), metadata={"x": x})

    async def consume(result: JobResult) -> None:
        await asyncio.sleep(0)
        seen.append(int.from_bytes(result.body, "big"))

    async def main() -> None:
        builder = BlueprintRunner.builder(blueprint.settings).app(blueprint)
        await builder.producer(produce()).consumer(consume).run_async()

    asyncio.run(main())
    assert sorted(seen) == [0, 1, 4, 9]


def test_an_async_producer_works_from_sync_run_too(
    blueprint: Blueprint, start_worker: StartWorker
) -> None:
    start_worker(jobs="0")

    async def produce() -> AsyncIterator[JobCall]:
        yield JobCall(0, (7).to_bytes(8, "big"))

    seen: list[JobResult] = []
    BlueprintRunner.builder(blueprint.settings).app(blueprint).producer(produce()).consumer(
        seen.append
    ).run()
    assert int.from_bytes(seen[0].body, "big") == 49


def test_a_failing_producer_is_raised_after_the_calls_in_flight_are_answered(
    blueprint: Blueprint, start_worker: StartWorker
) -> None:
    start_worker(jobs="0")
    seen: list[JobResult] = []

    def produce() -> Iterator[JobCall]:
        yield JobCall(0, (2).to_bytes(8, "big"))
        raise RuntimeError("the chain went away")

    runner = BlueprintRunner.builder(blueprint.settings).app(blueprint).producer(produce)
    with pytest.raises(RuntimeError, match="chain went away"):
        runner.consumer(seen.append).run()
    assert len(seen) == 1 and seen[0].ok


def test_a_runner_runs_again(blueprint: Blueprint, start_worker: StartWorker) -> None:
    start_worker(jobs="0")
    seen: list[JobResult] = []

    def produce() -> list[JobCall]:
        return [JobCall(0, x.to_bytes(8, "big")) for x in range(3)]

    builder = BlueprintRunner.builder(blueprint.settings).app(blueprint).producer(produce)
    runner = builder.consumer(seen.append).build()
    summaries = [runner.run(), runner.run()]
    assert [(s.submitted, s.succeeded) for s in summaries] == [(3, 3), (3, 3)]
    assert len(seen) == 6 and all(result.ok for result in seen)


def test_stop_ends_the_run_in_progress_and_not_the_next(
    blueprint: Blueprint, start_worker: StartWorker
) -> None:
    start_worker(jobs="0")
    total = 1000

    def produce() -> Iterator[JobCall]:
        return (JobCall(0, x.to_bytes(8, "big")) for x in range(total))

    def stop_at_the_first_result(result: JobResult) -> None:
        runner.stop()

    builder = BlueprintRunner.builder(blueprint.settings).app(blueprint).producer(produce)
    runner = builder.consumer(stop_at_the_first_result).max_in_flight(2).build()
    for summary in (runner.run(), runner.run()):
        # The calls already taken are answered; the producer is not drained.
        assert 1 <= summary.succeeded == summary.submitted < total and summary.failed == 0


def test_submit_waits_for_one_result(blueprint: Blueprint, start_worker: StartWorker) -> None:
    start_worker(jobs="0,1")
    result = submit(blueprint, JobCall(1, (9).to_bytes(8, "big")), wait=True, timeout_s=20)
    assert result is not None and result.ok and int.from_bytes(result.body, "big") == 81
    assert submit(blueprint, JobCall(0, (9).to_bytes(8, "big"))) is None


def test_submit_answers_a_call_of_an_unknown_job_at_once_and_publishes_nothing(
    blueprint: Blueprint, redis_url: str
) -> None:
    # No worker serves job 99: a published call would wait for ever (here: for timeout_s).
    for wait in (True, False):
        result = submit(blueprint, JobCall(99, b""), wait=wait, timeout_s=5)
        assert result is not None and result.error is not None
        assert result.error.kind == ErrorKind.UNKNOWN_JOB
    assert not redis.Redis.from_url(redis_url).exists(job_queue(99))


def test_the_cli_reports_an_unknown_job_instead_of_waiting(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    args = ["submit", "--app", "tests.workers.apps", "99", "--args-hex", ""]
    unknown = CliRunner().invoke(cli, [*args, "--wait", "--timeout-s", "5"])
    assert unknown.exit_code == 1 and "unknown_job" in unknown.output, unknown.output


def test_the_cli_submits_and_runs_an_app(
    settings: Settings,
    blueprint: Blueprint,
    start_worker: StartWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start_worker(jobs="0,3")
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    cli_runner = CliRunner()

    ok = cli_runner.invoke(
        cli,
        [
            "submit",
            "--app",
            "tests.workers.apps",
            "0",
            "--args-hex",
            "0" * 14 + "03",
            "--wait",
            "--timeout-s",
            "20",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "ok job=0 ran_on=local body_hex=" + "0" * 30 + "09" in ok.output

    failed = cli_runner.invoke(
        cli, ["submit", "--app", "tests.workers.apps", "3", "--args-hex", "", "--wait"]
    )
    assert failed.exit_code == 1 and "function_error" in failed.output

    neither = cli_runner.invoke(cli, ["submit", "--app", "tests.workers.apps", "0"])
    assert neither.exit_code != 0

    runnable_app.received.clear()
    run = cli_runner.invoke(cli, ["run", "--app", "tests.dispatcher.runnable_app"])
    assert run.exit_code == 0, run.output
    assert "5 calls: 5 ok, 0 failed" in run.output and len(runnable_app.received) == 5


def test_run_shows_a_live_progress_bar_on_a_terminal_unless_quiet(
    settings: Settings,
    start_worker: StartWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start_worker(jobs="0")
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich's switch: stderr counts as a terminal
    # The app module reads the settings when imported: import it afresh for this test's Redis.
    monkeypatch.delitem(sys.modules, "tests.dispatcher.runnable_app", raising=False)
    command = ["run", "--app", "tests.dispatcher.runnable_app"]

    shown = CliRunner().invoke(cli, command)
    quiet = CliRunner().invoke(cli, [*command, "--quiet"])

    assert shown.exit_code == 0 and quiet.exit_code == 0, shown.output + quiet.output
    assert "5 of 5 answered" in shown.stderr and "5 ok" in shown.stderr, shown.stderr
    assert "0 in flight" in shown.stderr
    assert "answered" not in quiet.stderr
    for result in (shown, quiet):
        assert "5 calls: 5 ok, 0 failed" in result.stdout

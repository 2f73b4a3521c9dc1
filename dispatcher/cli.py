"""The ``blueprint-faas`` command: thin wrappers over library functions.

Heavy imports (Celery, Redis, httpx) happen inside the commands: ``--pool gevent`` needs the
process monkey-patched before any of them loads, and :func:`main` does that first. Every
command reports an expected failure the same way (one red line, exit status 1); bad
arguments are typer's (exit status 2).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dispatcher._cli_operations import (
    MAX_JOB_ID,
    AppOption,
    JobIdArgument,
    operations_cli,
    reported_errors,
)

if TYPE_CHECKING:
    from dispatcher.runner import BlueprintRunnerBuilder, Producer

__all__ = ["cli", "main"]

_HELP = """Run Blueprint jobs on your own Celery workers or on FaaS providers, job by job.

Try it without a server: `blueprint-faas demo`. With an app of your own (a Python module, or
a settings file such as blueprint.toml): start `blueprint-faas worker --app myapp` on each
worker host, then `blueprint-faas run --app myapp` to run its producer, or `blueprint-faas
submit --app myapp 0 --args-hex 07 --wait` for one call. `blueprint-faas deploy`, `status`
and `cost` operate the FaaS jobs.
"""

cli = typer.Typer(no_args_is_help=True, add_completion=False, help=_HELP)
cli.add_typer(operations_cli)  # deploy, warm, health, info, undeploy, status, cost


class PoolKind(StrEnum):
    """The worker pools ``--pool`` offers (``workers.entry.Pool``)."""

    PREFORK = "prefork"
    THREADS = "threads"
    GEVENT = "gevent"
    SOLO = "solo"


class LaneChoice(StrEnum):
    """The sides of its jobs a worker serves (``dispatcher.placement.Lane``, or both)."""

    BOTH = "both"
    LOCAL = "local"
    FAAS = "faas"


def main() -> None:
    """Console-script entry point."""
    # As with ``celery -A``: an app module in the current folder is importable by name.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    _maybe_patch_gevent(sys.argv[1:])
    cli()


@cli.command()
def worker(
    app: AppOption,
    jobs: Annotated[
        str | None, typer.Option(help="Job ids to serve, separated by commas, e.g. 0,3.")
    ] = None,
    pool: Annotated[PoolKind, typer.Option(help="The worker pool.")] = PoolKind.PREFORK,
    concurrency: Annotated[int | None, typer.Option(min=1)] = None,
    loglevel: Annotated[str, typer.Option()] = "INFO",
    lane: Annotated[
        LaneChoice,
        typer.Option(help="Serve the local side, the FaaS side, or both, of the jobs."),
    ] = LaneChoice.BOTH,
) -> None:
    """Serve the queues of the app's jobs (all of them unless --jobs)."""
    from dispatcher.app import load_app
    from dispatcher.placement import Lane
    from workers import run_worker

    job_ids = None if jobs is None else _job_ids(jobs)
    with reported_errors():
        run_worker(
            load_app(app),
            jobs=job_ids,
            pool=pool.value,  # type: ignore[arg-type]  # PoolKind's values are Pool's
            concurrency=concurrency,
            loglevel=loglevel,
            lanes=None if lane is LaneChoice.BOTH else [Lane(lane.value)],
        )


@cli.command("submit")
def submit_command(
    app: AppOption,
    job_id: JobIdArgument,
    args_hex: Annotated[str | None, typer.Option(help="Job args as hex.")] = None,
    args_file: Annotated[Path | None, typer.Option(help="Read job args from a file.")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the result and print it.")] = False,
    timeout_s: Annotated[float | None, typer.Option(help="With --wait.")] = None,
) -> None:
    """Publish one call; print its call id, or its result with --wait."""
    from dispatcher.app import load_app
    from dispatcher.jobs import JobCall
    from dispatcher.runner import submit

    if (args_hex is None) == (args_file is None):
        raise typer.BadParameter("give exactly one of --args-hex and --args-file")
    try:
        args = (
            bytes.fromhex(args_hex) if args_hex is not None else Path(args_file or "").read_bytes()
        )
    except (ValueError, OSError) as error:
        raise typer.BadParameter(f"cannot read the job args: {error}") from error
    call = JobCall(job_id, args)
    with reported_errors():
        result = submit(load_app(app), call, wait=wait, timeout_s=timeout_s)
    if result is None:
        typer.echo(call.call_id)
        return
    typer.echo(_describe(result))
    if not result.ok:
        raise typer.Exit(1)


@cli.command()
def run(
    app: AppOption,
    quiet: Annotated[bool, typer.Option(help="No live progress bar, only the summary.")] = False,
) -> None:
    """Run the app's producer to the end, handing every result to its consumers.

    On a terminal a live bar shows answered of submitted calls, ok and failed, calls/s and
    calls in flight; the summary line follows in every case.
    """
    from dispatcher.app import load_app
    from dispatcher.runner import BlueprintRunner

    with reported_errors():
        blueprint = load_app(app)
    if blueprint.producer is None:
        raise typer.BadParameter(f"{app} has no producer")
    builder = BlueprintRunner.builder().app(blueprint)
    with reported_errors(), _run_progress(builder, blueprint.producer, shown=not quiet):
        summary = builder.run()
    typer.echo(
        f"{summary.submitted} calls: {summary.succeeded} ok, {summary.failed} failed "
        f"in {summary.elapsed_s:.2f} s"
    )


@cli.command()
def demo(
    count: Annotated[int, typer.Option(min=1, help="Numbers to square.")] = 6,
    pool: Annotated[PoolKind, typer.Option(help="The demo worker's pool.")] = PoolKind.THREADS,
) -> None:
    """The incredible-squaring demo: job 0 local, job 1 on the reference FaaS server."""
    from dispatcher.demo import run_demo

    with reported_errors():
        results = run_demo(tuple(range(2, 2 + count)), pool=pool.value)
    if not all(result.ok for result in results):
        raise typer.Exit(1)


@cli.command()
def beat(
    app: AppOption,
    loglevel: Annotated[str, typer.Option()] = "INFO",
) -> None:
    """Send the warm and health tasks of the app's FaaS jobs (one beat schedules at a time)."""
    from dispatcher.app import load_app
    from workers.entry import run_beat

    with reported_errors():
        run_beat(load_app(app), loglevel=loglevel)


@cli.command()
def flower(
    app: AppOption,
    port: Annotated[int, typer.Option(min=1, max=65535)] = 5555,
    address: Annotated[str, typer.Option(help="Interface to listen on; all by default.")] = "",
    basic_auth: Annotated[
        str | None,
        typer.Option(envvar="FLOWER_BASIC_AUTH", help="user:password (prefer the env var)."),
    ] = None,
    no_auth: Annotated[bool, typer.Option(help="Serve without authentication.")] = False,
) -> None:
    """Serve Flower for the app's workers, tasks and queues, behind basic auth."""
    from dispatcher.app import load_app
    from workers.entry import run_flower

    with reported_errors():
        run_flower(
            load_app(app), port=port, address=address, basic_auth=basic_auth, no_auth=no_auth
        )


@cli.command(
    "reference-server",
    add_help_option=False,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def reference_server(ctx: typer.Context) -> None:
    """Serve the Custom FaaS contract (the reference implementation); --help for options."""
    # One definition of the server's options, the module's own: no second list to drift.
    from providers.reference_server.__main__ import main as serve_main

    serve_main(ctx.args, prog="blueprint-faas reference-server")


def _job_ids(text: str) -> list[int]:
    try:
        job_ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        job_ids = []
    if not job_ids or not all(0 <= job_id <= MAX_JOB_ID for job_id in job_ids):
        raise typer.BadParameter(
            f"must be job ids (0 to {MAX_JOB_ID}) separated by commas, got {text!r}",
            param_hint="--jobs",
        )
    return job_ids


def _describe(result: object) -> str:
    from dispatcher.jobs import JobResult
    from dispatcher.placement import PlacementReason

    assert isinstance(result, JobResult)
    where = f"ran_on={result.ran_on}"
    if result.placement_reason != PlacementReason.POLICY:  # an overflow or a fallback
        where = f"{where} placement_reason={result.placement_reason}"
    if result.ok:
        return f"ok job={result.job_id} {where} body_hex={result.body.hex()}"
    return f"error job={result.job_id} {where} error={result.error}"


def _maybe_patch_gevent(argv: list[str]) -> None:
    # Mirrors `celery -P gevent`: patch before Celery, Redis or httpx are imported.
    if argv[:1] != ["worker"]:
        return
    for index, arg in enumerate(argv):
        value = arg.partition("=")[2] if "=" in arg else None
        if arg in ("--pool", "-P") and index + 1 < len(argv):
            value = argv[index + 1]
        if arg.startswith(("--pool", "-P")) and value == "gevent":
            from gevent import monkey

            monkey.patch_all()
            return


def _run_progress(
    builder: BlueprintRunnerBuilder, producer: Producer | Callable[[], Producer], *, shown: bool
) -> AbstractContextManager[object]:
    """A live bar on stderr for the run ``builder`` makes, if shown and stderr is a terminal."""
    from rich.console import Console

    from dispatcher._run_progress import RunProgress

    console = Console(stderr=True)
    if not (shown and console.is_terminal):
        return nullcontext()
    progress = RunProgress(console)
    builder.producer(progress.counted(producer)).consumer(progress.record)
    return progress

"""The ``blueprint-faas`` command: thin wrappers over library functions.

Heavy imports (Celery, Redis, httpx) happen inside the commands: ``--pool gevent`` needs the
process monkey-patched before any of them loads, and :func:`main` does that first.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from dispatcher._cli_operations import operations_cli

__all__ = ["cli", "main"]

cli = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
cli.add_typer(operations_cli)  # deploy, warm, health, info, undeploy, status, cost

_App = Annotated[str, typer.Option("--app", "-A", help="App module, or module:attr.")]


def main() -> None:
    """Console-script entry point."""
    # As with ``celery -A``: an app module in the current folder is importable by name.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    _maybe_patch_gevent(sys.argv[1:])
    cli()


@cli.command()
def worker(
    app: _App,
    jobs: Annotated[str | None, typer.Option(help="Job ids to serve, e.g. 0,3.")] = None,
    pool: Annotated[str, typer.Option(help="prefork, threads, gevent or solo.")] = "prefork",
    concurrency: Annotated[int | None, typer.Option(min=1)] = None,
    loglevel: Annotated[str, typer.Option()] = "INFO",
) -> None:
    """Serve the queues of the app's jobs (all of them unless --jobs)."""
    from dispatcher.app import load_app
    from workers import run_worker

    job_ids = None if jobs is None else [int(part) for part in jobs.split(",") if part.strip()]
    run_worker(load_app(app), jobs=job_ids, pool=pool, concurrency=concurrency, loglevel=loglevel)  # type: ignore[arg-type]


@cli.command("submit")
def submit_command(
    app: _App,
    job_id: int,
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
    args = bytes.fromhex(args_hex) if args_hex is not None else Path(args_file or "").read_bytes()
    call = JobCall(job_id, args)
    result = submit(load_app(app), call, wait=wait, timeout_s=timeout_s)
    if result is None:
        typer.echo(call.call_id)
        return
    typer.echo(_describe(result))
    if not result.ok:
        raise typer.Exit(1)


@cli.command()
def run(app: _App) -> None:
    """Run the app's producer to the end, handing every result to its consumers."""
    from dispatcher.app import load_app
    from dispatcher.runner import BlueprintRunner

    blueprint = load_app(app)
    if blueprint.producer is None:
        raise typer.BadParameter(f"{app} has no producer")
    summary = BlueprintRunner.builder().app(blueprint).run()
    typer.echo(
        f"{summary.submitted} calls: {summary.succeeded} ok, {summary.failed} failed "
        f"in {summary.elapsed_s:.2f} s"
    )


@cli.command()
def demo(
    count: Annotated[int, typer.Option(min=1, help="Numbers to square.")] = 6,
    pool: Annotated[str, typer.Option()] = "threads",
) -> None:
    """The incredible-squaring demo: job 0 local, job 1 on the reference FaaS server."""
    from dispatcher.demo import run_demo

    results = run_demo(tuple(range(2, 2 + count)), pool=pool)
    if not all(result.ok for result in results):
        raise typer.Exit(1)


@cli.command()
def beat(
    app: _App,
    loglevel: Annotated[str, typer.Option()] = "INFO",
) -> None:
    """Send the warm and health tasks of the app's FaaS jobs (one beat schedules at a time)."""
    from dispatcher.app import load_app
    from dispatcher.errors import ConfigError
    from workers.entry import run_beat

    try:
        run_beat(load_app(app), loglevel=loglevel)
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from error


@cli.command()
def flower(
    app: _App,
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
    from dispatcher.errors import ConfigError
    from workers.entry import run_flower

    try:
        run_flower(
            load_app(app), port=port, address=address, basic_auth=basic_auth, no_auth=no_auth
        )
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from error


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


def _describe(result: object) -> str:
    from dispatcher.jobs import JobResult

    assert isinstance(result, JobResult)
    if result.ok:
        return f"ok job={result.job_id} ran_on={result.ran_on} body_hex={result.body.hex()}"
    return f"error job={result.job_id} ran_on={result.ran_on} error={result.error}"


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

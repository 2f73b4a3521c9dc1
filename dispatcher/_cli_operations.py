"""The operations commands: deploy, warm, health, info, undeploy, status and cost.

Thin: each command parses, calls one function of :mod:`dispatcher.operations`,
:mod:`dispatcher.status` or :mod:`dispatcher.cost`, and prints. People get rich tables;
``--json`` prints one JSON document on stdout for scripts. Progress and errors go to stderr.
An expected failure (a provider error, a bad app or option, an unreachable broker) is one
red line with its kind and message and exit status 1, never a traceback.

Only typer is imported at module level: ``blueprint-faas worker --pool gevent`` imports this
module before it monkey-patches the process.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from dispatcher.app import Blueprint
    from dispatcher.cost import CostReport
    from dispatcher.status import AppStatus
    from providers.base import FaasDeployment

__all__ = ["MAX_JOB_ID", "AppOption", "JobIdArgument", "operations_cli", "reported_errors"]

operations_cli = typer.Typer(add_completion=False)

_T = TypeVar("_T")

AppOption = Annotated[
    str,
    typer.Option("--app", "-A", help="App module, module:attr, or settings file (.toml or .json)."),
]
_App = AppOption
#: ``providers.base.MAX_JOB_ID``, spelled out: importing ``providers`` loads httpx and ssl,
#: which ``--pool gevent`` must patch first (a test keeps the two equal).
MAX_JOB_ID = 2**32 - 1
JobIdArgument = Annotated[int, typer.Argument(help="The job id.", min=0, max=MAX_JOB_ID)]
_Json = Annotated[bool, typer.Option("--json", help="Print JSON on stdout, for scripts.")]
_Provider = Annotated[
    str | None,
    typer.Option(help="Check: must be the provider the app registered for the job."),
]


@operations_cli.command()
def deploy(
    job_id: JobIdArgument,
    app: _App,
    handler: Annotated[str, typer.Option(help="The handler, module:function (bytes -> bytes).")],
    source: Annotated[
        list[Path] | None,
        typer.Option(help="A file or folder to ship (repeatable); must hold the handler."),
    ] = None,
    memory: Annotated[int | None, typer.Option(help="Memory in MB.")] = None,
    timeout: Annotated[int | None, typer.Option(help="Function timeout in seconds.")] = None,
    env: Annotated[
        list[str] | None, typer.Option(help="NAME=VALUE for the function (repeatable).")
    ] = None,
    keep_warm: Annotated[
        bool | None, typer.Option("--keep-warm/--no-keep-warm", help="Keep it warm, or not.")
    ] = None,
    max_concurrency: Annotated[int | None, typer.Option(help="Concurrent instances cap.")] = None,
    provider: _Provider = None,
    as_json: _Json = False,
) -> None:
    """Package HANDLER for the job's provider and deploy it (create or replace).

    The function gets the job's config in the app (its settings file's fields), with the
    options given here over it.
    """
    from dispatcher import operations

    def deploy_job(blueprint: Blueprint) -> FaasDeployment:
        executor = operations.executor_for(blueprint, job_id, provider)
        config = operations.faas_config(
            executor.job_config(job_id),
            memory_mb=memory,
            timeout_s=timeout,
            env_vars=operations.parse_env_pairs(env or []),
            keep_warm=keep_warm,
            max_concurrency=max_concurrency,
        )
        return operations.deploy(
            blueprint, job_id, handler, sources=source or [], config=config, provider=provider
        )

    deployment = _run(app, f"Deploying job {job_id}", deploy_job)
    _print_deployment(deployment, as_json, title=f"Deployed job {job_id}")


@operations_cli.command()
def warm(
    job_id: JobIdArgument,
    app: _App,
    instances: Annotated[int, typer.Option(min=1, help="Instances to start.")] = 1,
    provider: _Provider = None,
    as_json: _Json = False,
) -> None:
    """Start instances of the job's function ahead of calls."""
    from dispatcher import operations

    warmed = _run(
        app,
        f"Warming job {job_id}",
        lambda blueprint: operations.warm(blueprint, job_id, instances, provider=provider),
    )
    _print_outcome(
        as_json,
        {"job_id": job_id, "instances_warmed": warmed},
        f"job {job_id}: {warmed} instance(s) warm",
    )


@operations_cli.command()
def health(
    job_id: JobIdArgument,
    app: _App,
    provider: _Provider = None,
    as_json: _Json = False,
) -> None:
    """Ask the provider whether the job's function can run; exit status 2 when it cannot."""
    from dispatcher import operations

    healthy = _run(
        app,
        f"Checking job {job_id}",
        lambda blueprint: operations.health(blueprint, job_id, provider=provider),
    )
    word = "[green]healthy[/green]" if healthy else "[red]unhealthy[/red]"
    _print_outcome(as_json, {"job_id": job_id, "healthy": healthy}, f"job {job_id}: {word}")
    if not healthy:
        raise typer.Exit(2)


@operations_cli.command()
def info(
    job_id: JobIdArgument,
    app: _App,
    provider: _Provider = None,
    as_json: _Json = False,
) -> None:
    """Show what the provider reports about the job's function."""
    from dispatcher import operations

    deployment = _run(
        app,
        f"Asking about job {job_id}",
        lambda blueprint: operations.info(blueprint, job_id, provider=provider),
    )
    _print_deployment(deployment, as_json, title=f"Job {job_id}")


@operations_cli.command()
def undeploy(
    job_id: JobIdArgument,
    app: _App,
    provider: _Provider = None,
    as_json: _Json = False,
) -> None:
    """Remove the job's function (nothing to remove is not an error)."""
    from dispatcher import operations

    _run(
        app,
        f"Removing job {job_id}",
        lambda blueprint: operations.undeploy(blueprint, job_id, provider=provider),
    )
    _print_outcome(as_json, {"job_id": job_id, "undeployed": True}, f"job {job_id}: undeployed")


@operations_cli.command()
def status(
    app: _App,
    inspect_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for workers to answer.")
    ] = 1.0,
    as_json: _Json = False,
) -> None:
    """Every job of the app: where it runs, its function, last health, queue and workers."""
    from dispatcher.status import app_status

    report = _run(
        app,
        "Asking the broker, the workers and the providers",
        lambda blueprint: app_status(blueprint, inspect_timeout_s=inspect_timeout),
    )
    if as_json:
        _print_json(report.to_dict())
    else:
        _print_status(report)


@operations_cli.command()
def cost(
    app: _App,
    last: Annotated[int, typer.Option(min=1, help="Read this many latest invocations.")] = 1000,
    job: Annotated[int | None, typer.Option(help="Also price this job on every provider.")] = None,
    memory: Annotated[
        float | None,
        typer.Option(help="Memory (MB) to price --job at; default: as it last ran."),
    ] = None,
    as_json: _Json = False,
) -> None:
    """Summarise recent FaaS invocations per job and provider; with --job, compare providers."""
    from dispatcher.cost import cost_report

    with reported_errors():
        blueprint = _load(app)
        try:
            report = cost_report(blueprint, last=last, job_id=job, memory_mb=memory)
        except ValueError as error:  # a memory no provider can price
            _fail(str(error))
    if as_json:
        _print_json(report.to_dict())
    else:
        _print_cost(report)


# -- running and printing -----------------------------------------------------------------


def _run(app: str, doing: str, operation: Callable[[Blueprint], _T]) -> _T:
    """Load the app and run one operation under a progress line; failures end the command."""
    with reported_errors():
        blueprint = _load(app)
        with _progress(doing):
            return operation(blueprint)


def _print_outcome(as_json: bool, document: dict[str, Any], line: str) -> None:
    if as_json:
        _print_json(document)
    else:
        _stdout().print(line)


# -- errors and progress ------------------------------------------------------------------


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn every expected failure into one red line on stderr and exit status 1."""
    from kombu.exceptions import OperationalError
    from redis import RedisError

    from dispatcher.errors import DispatcherError
    from providers.errors import FaasError

    try:
        yield
    except FaasError as error:
        _fail(f"{error.kind}: {error.message}")
    except DispatcherError as error:
        _fail(str(error))
    # Their messages name the host and port, never the password.
    except OperationalError as error:
        _fail(f"broker unreachable: {error}")
    except RedisError as error:
        _fail(f"Redis unreachable: {error}")


def _fail(message: str) -> NoReturn:
    from rich.markup import escape

    _stderr().print(f"[red]error: {escape(message)}[/red]", soft_wrap=True)
    raise typer.Exit(1)


@contextmanager
def _progress(message: str) -> Iterator[None]:
    with _stderr().status(f"{message}…"):
        yield


def _load(spec: str) -> Blueprint:
    from dispatcher.app import load_app

    return load_app(spec)


def _stdout() -> Console:
    from rich.console import Console

    return Console(soft_wrap=True)


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True)


# -- printing -------------------------------------------------------------------------------


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, sort_keys=True))


def _print_deployment(deployment: FaasDeployment, as_json: bool, *, title: str) -> None:
    from rich.table import Table

    from dispatcher.operations import deployment_to_dict

    values = deployment_to_dict(deployment)
    if as_json:
        _print_json(values)
        return
    table = Table(title=title, show_header=False)
    for name, value in values.items():
        table.add_row(name, "-" if value is None else str(value))
    _stdout().print(table)


def _print_status(report: AppStatus) -> None:
    from rich.table import Table

    table = Table(title="Jobs")
    columns = ("job", "runs on", "placement", "function", "last health", "queued", "breaker")
    for column in (*columns, "budget", "workers"):
        table.add_column(column)
    for job in report.jobs:
        runs_on = job.provider or job.runs_on
        queued = str(job.queue_length)
        if job.lane_queue is not None:
            queued = f"{queued} (+{job.lane_queue_length} on {job.lane_queue})"
        breaker = "-"
        if job.breaker is not None:
            breaker = str(job.breaker.state).replace("_", "-")
            if job.breaker.is_open:
                breaker = f"{breaker}, {job.breaker.cooldown_left_s:.0f} s left"
        budget = "-"
        if job.budget is not None:
            budget = f"{job.budget.in_use}/{job.budget.limit} (of {job.budget.declared})"
        function = "-"
        if job.deployment is not None:
            function = job.deployment.replace("_", " ")
            if job.deployment_error:
                function = f"{function}: {job.deployment_error}"
        last_health = "-"
        if job.health is not None:
            last_health = f"{job.health.status} at {_clock(job.health.checked_at)}"
            if job.health.error:
                last_health = f"{last_health}: {job.health.error}"
        workers = ", ".join(job.workers) or "none"
        table.add_row(
            str(job.job_id),
            runs_on,
            job.placement.replace("_", " "),
            function,
            last_health,
            queued,
            breaker,
            budget,
            workers,
        )
    _stdout().print(table)


def _print_cost(report: CostReport) -> None:
    from rich.table import Table

    console = _stdout()
    table = Table(title=f"Last {report.invocations} FaaS invocations")
    for column in ("job", "provider", "calls", "errors", "p50 ms", "p95 ms", "billed s", "cost $"):
        table.add_column(column, justify="right")
    for job in report.jobs:
        table.add_row(
            str(job.job_id),
            job.provider,
            str(job.count),
            str(job.errors),
            _number(job.p50_ms, ".1f"),
            _number(job.p95_ms, ".1f"),
            f"{job.billed_s:.3f}",
            f"{job.cost_usd:.8f}",
        )
    console.print(table)
    if report.job_id is None:
        return
    if not report.quotes:
        console.print(f"job {report.job_id}: no invocations to price")
        return
    memory = _number(report.memory_mb, "g")
    compared = Table(title=f"Job {report.job_id} at {memory} MB on each provider")
    for column in ("provider", "region", "$ per invocation", "$ per million"):
        compared.add_column(column, justify="right")
    for quote in report.quotes:
        compared.add_row(
            quote.provider,
            quote.region,
            f"{quote.per_invocation_usd:.10f}",
            f"{quote.per_million_usd:.4f}",
        )
    console.print(compared)


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _clock(unix_s: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

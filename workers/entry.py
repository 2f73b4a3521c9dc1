"""Starting the long-running processes of an app definition: worker, beat and Flower.

What ``blueprint-faas worker``, ``beat`` and ``flower`` run.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from dispatcher.errors import ConfigError
from dispatcher.keys import WARM_QUEUE
from workers.app import create_beat_app, create_celery_app, served_job_ids, served_queues

if TYPE_CHECKING:
    from celery import Celery

    from dispatcher.app import Blueprint
    from dispatcher.placement import Lane

__all__ = ["FLOWER_PORT_DEFAULT", "Pool", "run_beat", "run_flower", "run_worker"]

FLOWER_PORT_DEFAULT = 5555

Pool = Literal["prefork", "threads", "gevent", "solo"]


def run_worker(
    blueprint: Blueprint,
    *,
    jobs: Iterable[int] | None = None,
    pool: Pool = "prefork",
    concurrency: int | None = None,
    loglevel: str = "INFO",
    hostname: str | None = None,
    lanes: Iterable[Lane] | None = None,
) -> None:
    """Serve the queues of ``jobs`` (default: every job of the blueprint) until stopped.

    ``lanes`` (default: both) restricts a worker to the local or the FaaS side of its jobs:
    the local side of an overflowing job wants CPU slots, its FaaS side threads.

    The worker also serves the control queue (warm and health tasks), sends task events
    when the ``send_events`` setting is on, and exports metrics on ``metrics_port``.

    For the gevent pool the caller must have monkey-patched the process before importing
    Celery, Redis or httpx (the CLI does it first thing).

    Raises
    ------
    ConfigError
        Unknown jobs or settings that cannot work (see :func:`create_celery_app`).
    """
    job_ids = served_job_ids(blueprint, jobs)
    lanes = None if lanes is None else list(lanes)
    app = create_celery_app(blueprint, job_ids, concurrency=concurrency, lanes=lanes)
    queues = [*served_queues(blueprint, job_ids, lanes), WARM_QUEUE]
    argv = [
        "worker",
        f"--queues={','.join(queues)}",
        f"--pool={pool}",
        f"--loglevel={loglevel}",
        f"--hostname={hostname or f'blueprint-{os.getpid()}@{socket.gethostname()}'}",
        # Mingle and gossip cost a second at start and chatter on the broker; nothing here
        # needs them (no revokes shared by broadcast, no clock sync between workers).
        "--without-mingle",
        "--without-gossip",
    ]
    if concurrency is not None:
        argv.append(f"--concurrency={concurrency}")
    if blueprint.settings.send_events:
        argv.append("--task-events")
    _run_celery_command(app, argv)


def run_beat(blueprint: Blueprint, *, loglevel: str = "INFO") -> None:
    """Run beat for the blueprint's FaaS jobs until stopped (:mod:`workers.beat`).

    Start as many as you like: only the holder of the beat lock sends, the others stand by.

    Raises
    ------
    ConfigError
        No Redis broker configured (the lock lives there).
    """
    app = create_beat_app(blueprint)
    _run_celery_command(app, ["beat", f"--loglevel={loglevel}"])


def run_flower(
    blueprint: Blueprint,
    *,
    port: int = FLOWER_PORT_DEFAULT,
    address: str = "",
    basic_auth: str | None = None,
    no_auth: bool = False,
) -> None:
    """Serve Flower for the blueprint's broker until stopped.

    Parameters
    ----------
    basic_auth:
        ``user:password`` (several separated by commas) protecting the UI and the API.
    no_auth:
        Serve without authentication; must be asked for explicitly.

    Raises
    ------
    ConfigError
        Neither ``basic_auth`` nor ``no_auth`` was given, or ``basic_auth`` is malformed.
    """
    if not basic_auth and not no_auth:
        raise ConfigError("Flower needs --basic-auth user:password (or an explicit --no-auth)")
    if basic_auth and any(":" not in pair for pair in basic_auth.split(",")):
        raise ConfigError("--basic-auth must be user:password")
    app = create_celery_app(blueprint)
    argv = ["flower", f"--port={port}", f"--address={address}"]
    if basic_auth:
        # Passed in-process, never on a command line another user could read.
        argv.append(f"--basic-auth={basic_auth}")
    _run_celery_command(app, argv)


def _run_celery_command(app: Celery, argv: list[str]) -> None:
    """``celery ARGV`` for ``app``, exiting with the command's own non-zero status.

    Celery's ``app.start`` (and ``worker_main``) runs the same click command but drops the
    exit status click hands back: a worker that stopped on an unrecoverable error exited 0,
    and a supervisor that restarts failed processes left it down.

    Raises
    ------
    SystemExit
        The command ended with a non-zero status.
    """
    from celery.bin.celery import celery as celery_command

    celery_command.params[0].default = app  # what app.start does: the --app option's default
    try:
        exit_code = celery_command.main(args=argv, standalone_mode=False)
    finally:
        celery_command.params[0].default = None
    if isinstance(exit_code, int) and exit_code:
        raise SystemExit(exit_code)

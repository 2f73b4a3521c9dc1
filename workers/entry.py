"""Starting a worker process for an app definition (what ``blueprint-faas worker`` runs)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from dispatcher.keys import job_queue
from workers.app import create_celery_app, served_job_ids

if TYPE_CHECKING:
    from dispatcher.app import Blueprint

__all__ = ["Pool", "run_worker"]

Pool = Literal["prefork", "threads", "gevent", "solo"]


def run_worker(
    blueprint: Blueprint,
    *,
    jobs: Iterable[int] | None = None,
    pool: Pool = "prefork",
    concurrency: int | None = None,
    loglevel: str = "INFO",
    hostname: str | None = None,
) -> None:
    """Serve the queues of ``jobs`` (default: every job of the blueprint) until stopped.

    For the gevent pool the caller must have monkey-patched the process before importing
    Celery, Redis or httpx (the CLI does it first thing).

    Raises
    ------
    ConfigError
        Unknown jobs or settings that cannot work (see :func:`create_celery_app`).
    """
    job_ids = served_job_ids(blueprint, jobs)
    app = create_celery_app(blueprint, job_ids)
    argv = [
        "worker",
        f"--queues={','.join(job_queue(job_id) for job_id in job_ids)}",
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
    app.worker_main(argv)

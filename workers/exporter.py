"""One Prometheus exporter per worker: started at ``worker_init``, children marked dead on exit.

At ``worker_init`` (the worker's parent process, before the pool forks) this prepares the
multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``, else a new temporary one) and starts
:func:`workers.metrics.start_metrics_server` on the ``metrics_port`` setting; 0 disables the
exporter. When a pool child exits (``worker_process_shutdown``) its live gauges are dropped
with :func:`~workers.metrics.mark_process_dead`; its counters stay counted. A temporary
directory the worker made for itself is removed when it shuts down (one it was given is
the operator's, and stays).

Failing to start (port taken, directory not writable) is logged and the worker runs on: an
observer never stops the work it observes.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from celery.signals import worker_init, worker_process_shutdown, worker_shutdown

from dispatcher.keys import METRICS_MULTIPROC_DIR_ENV
from workers import metrics

__all__ = ["install"]

logger = logging.getLogger("blueprint_faas.workers.exporter")

_port: int = 0
_exporter: metrics.MetricsServer | None = None
_own_directory: Path | None = None  # made by this worker, so removed by it


def install(port: int) -> None:
    """Start the exporter on ``port`` (0: none) when a worker starts in this process."""
    global _port
    _port = port
    worker_init.connect(_on_worker_init, weak=False, dispatch_uid="blueprint-exporter-init")
    worker_process_shutdown.connect(
        _on_child_exit, weak=False, dispatch_uid="blueprint-exporter-child-exit"
    )
    worker_shutdown.connect(_on_worker_shutdown, weak=False, dispatch_uid="blueprint-exporter-stop")


def _on_worker_init(**_: Any) -> None:
    global _exporter, _own_directory
    if not _port or _exporter is not None:
        return
    try:
        given = os.environ.get(METRICS_MULTIPROC_DIR_ENV)
        directory = metrics.prepare_multiproc_dir()
        _own_directory = None if given else directory
        _exporter = metrics.start_metrics_server(_port, directory)
    except (OSError, ValueError):
        logger.exception("the metrics exporter could not start on port %s; running without", _port)


def _on_child_exit(pid: int | None = None, **_: Any) -> None:
    metrics.mark_process_dead(pid if pid is not None else os.getpid())


def _on_worker_shutdown(**_: Any) -> None:
    global _exporter, _own_directory
    if _exporter is not None:
        _exporter.close()
        _exporter = None
    if _own_directory is not None:
        shutil.rmtree(_own_directory, ignore_errors=True)
        _own_directory = None

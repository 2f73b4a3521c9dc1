"""The prefork pool, surviving a broker reconnect that finds a child already gone.

After a lost broker connection Celery registers the pool with the event loop again, child
by child. A child that exited meanwhile (typically killed for its hard time limit, which the
stalled event loop noticed late) is still in the pool's list until the pool is maintained,
with its exit sentinel already closed and set to None; Celery then passes that None to
``hub.add_reader``, whose ``ValueError`` is not among the errors it tolerates there, and the
worker stops on an "unrecoverable error" (seen in tests/workers/test_redis_restart.py).
:class:`TaskPool` skips such a child: the pool's maintenance replaces it as usual.
"""

from __future__ import annotations

from typing import Any

from celery.concurrency import asynpool, prefork

__all__ = ["POOL_PATH", "TaskPool"]

#: What ``worker_pool`` names to select :class:`TaskPool` for ``--pool prefork``.
POOL_PATH = "workers._prefork:TaskPool"


class _AsynPool(asynpool.AsynPool):  # type: ignore[misc]
    def _track_child_process(self, proc: Any, hub: Any) -> None:
        if getattr(proc, "_sentinel_poll", ...) is None:  # exited and untracked already
            return
        super()._track_child_process(proc, hub)


class TaskPool(prefork.TaskPool):  # type: ignore[misc]
    """Celery's prefork pool with :class:`_AsynPool` as its asynchronous pool."""

    Pool = _AsynPool

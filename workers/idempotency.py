"""The idempotency guard: a call whose result is already stored is never run again.

``call_id`` is the Celery task id, so the stored result *is* the idempotency record (arq
looks for the result key the same way before enqueueing). With late acks a message can be
delivered twice: after a worker died between storing the result and acknowledging, or when
a producer sends a call again. Checking costs one GET per call; a call found stored costs
one more, to announce it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from celery import states

if TYPE_CHECKING:
    from celery.backends.base import Backend

__all__ = ["announce_stored", "stored_outcome"]

logger = logging.getLogger("blueprint_faas.workers")


def stored_outcome(backend: Backend, call_id: str) -> dict[str, Any] | None:
    """The stored Celery meta of ``call_id`` when it has an outcome, else None.

    A call waiting for a retry (state RETRY) has no outcome yet and may run. The read follows
    the backend's retry policy, so Redis restarting delays the check instead of failing it.
    """
    meta: dict[str, Any] = backend.get_task_meta(call_id, cache=False)
    return meta if meta.get("status") in states.READY_STATES else None


def announce_stored(backend: Backend, call_id: str) -> None:
    """Tell a runner waiting on pub/sub that ``call_id``'s outcome is (already) stored.

    Celery never overwrites a stored success, so storing it again would not notify anyone,
    and a runner that subscribed after the first store would wait forever. The stored value
    is published as it is, on the key the Redis backend publishes results on: the decoded
    meta of a FAILURE or REVOKED holds an exception object, which does not encode again.
    Backends without pub/sub need nothing: their runners poll the stored value.
    """
    client = getattr(backend, "client", None)
    publish = getattr(client, "publish", None)
    if publish is None:
        return
    key = backend.get_key_for_task(call_id)
    try:
        stored = backend.get(key)
        if stored is not None:  # expired since the check: nothing left to announce
            publish(key, stored)
    except Exception as error:  # an observer: the stored result stays the truth
        logger.warning("could not announce the stored result of %s: %r", call_id, error)

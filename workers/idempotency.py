"""The idempotency guard: a call whose result is already stored is never run again.

``call_id`` is the Celery task id, so the stored result *is* the idempotency record (arq
looks for the result key the same way before enqueueing). With late acks a message can be
delivered twice: after a worker died between storing the result and acknowledging, or when
a producer sends a call again. Checking costs one GET per call; a call found stored costs
one more, to announce it. The calls of a batch are checked with one MGET, and those found
stored are announced in one pipeline.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from celery import states

if TYPE_CHECKING:
    from celery.backends.base import Backend

__all__ = ["announce_stored", "answered_and_announced", "stored_outcome"]

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


def answered_and_announced(backend: Backend, call_ids: list[str]) -> set[str]:
    """Those of ``call_ids`` whose outcome is stored, each announced again (see above).

    On Redis: one MGET, then one pipeline of PUBLISH for the stored ones. Elsewhere: what
    :func:`stored_outcome` does, call by call (the runners of those backends poll).
    """
    client = getattr(backend, "client", None)
    if client is None or not hasattr(backend, "mget"):
        return {call_id for call_id in call_ids if stored_outcome(backend, call_id) is not None}
    keys = [backend.get_key_for_task(call_id) for call_id in call_ids]
    values = backend.ensure(backend.mget, (keys,))
    stored = {}
    for call_id, key, value in zip(call_ids, keys, values, strict=True):
        if value is not None and backend.decode_result(value).get("status") in states.READY_STATES:
            stored[call_id] = (key, value)
    if stored:
        try:
            with client.pipeline(transaction=False) as pipe:
                for key, value in stored.values():
                    pipe.publish(key, value)
                pipe.execute()
        except Exception as error:  # an observer: the stored results stay the truth
            logger.warning("could not announce %d stored results: %r", len(stored), error)
    return set(stored)

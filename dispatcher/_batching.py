"""Which ready calls share a message: the runner's batching rule.

Celery's cost is per message (consume, acknowledge, store), so when several calls of one job
are ready to publish at the same moment the runner sends them in one message. Only calls
that are *already* ready are grouped: nothing waits for a batch to fill, so a lone call is
published at once, exactly as without batching. A batch holds calls of one job only (one
queue), at most ``max_calls`` of them and at most ``max_bytes`` of their wire forms; a call
bigger than that travels alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from dispatcher.jobs import JobCall

__all__ = ["batches", "wire_size"]

#: What a call's wire dict costs beyond its base64 args and its metadata (keys, call id).
_WIRE_OVERHEAD_BYTES = 96


def wire_size(call: JobCall) -> int:
    """About how many bytes ``call``'s wire form takes in a message (exact for the args).

    Counted rather than encoded: the message is encoded once, by kombu, when it is sent.
    """
    metadata_bytes = 0
    if call.metadata:
        metadata_bytes = sum(
            len(key) + len(repr(value)) + 4 for key, value in call.metadata.items()
        )
    return (
        4 * ((len(call.args) + 2) // 3) + len(call.call_id) + metadata_bytes + _WIRE_OVERHEAD_BYTES
    )


def batches(calls: Iterable[JobCall], max_calls: int, max_bytes: int) -> list[list[JobCall]]:
    """``calls`` grouped into the messages that carry them, in the order they came.

    Calls of one job stay in the order given; each group is one job's, at most
    ``max_calls`` long and, unless it is a single call, at most ``max_bytes`` in
    :func:`wire_size`. With ``max_calls`` 1 every call is a group of its own.
    """
    finished: list[list[JobCall]] = []
    open_groups: dict[int, tuple[list[JobCall], int]] = {}
    for call in calls:
        size = wire_size(call)
        group, group_bytes = open_groups.get(call.job_id, ([], 0))
        if group and (len(group) >= max_calls or group_bytes + size > max_bytes):
            finished.append(group)
            group, group_bytes = [], 0
        group.append(call)
        open_groups[call.job_id] = (group, group_bytes + size)
    finished.extend(group for group, _ in open_groups.values())
    return finished

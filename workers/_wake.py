"""Waking a gevent worker's consumer loop as soon as an acknowledgement frees a prefetch slot.

With late acks the Redis transport stops reading a job queue while the worker holds as many
unacknowledged calls as its prefetch count allows (concurrency x 1 here). A threads or
prefork worker runs Celery's event loop, which looks at the credit again on every tick. A
gevent worker runs Celery's blocking loop instead, which sits in ``poll`` for up to 2 s on the
other sockets (remote control) while the queue is paused: a call finishing does not wake it,
so a saturated gevent worker took new calls in bursts every 2 s (22 jobs/s at concurrency 50
where 500 were possible).

:class:`WakingRequest`, the execute task's request class, writes one byte to a pipe that the
transport's poller also watches, after each acknowledgement or rejection. The poll returns,
the transport sees the credit and reads the queue again. Nothing changes for other pools:
their poller belongs to Celery's event loop and is left alone.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from celery.worker.request import Request
from kombu.utils.compat import detect_environment
from kombu.utils.eventio import READ

__all__ = ["WakingRequest"]


class WakingRequest(Request):  # type: ignore[misc]
    """A task request that wakes a green consumer loop once its message is settled."""

    def acknowledge(self) -> None:
        settled = self.acknowledged
        super().acknowledge()
        if not settled:
            _wake_consumer(self._message)

    def reject(self, requeue: bool = False) -> None:
        settled = self.acknowledged
        super().reject(requeue)
        if not settled:
            _wake_consumer(self._message)


class _WakeablePoller:
    """Wraps a kombu poller: :meth:`wake` makes a running :meth:`poll` return at once.

    A wake shows up as no event at all, which the Redis transport treats as a poll that
    timed out: it re-checks the credit and polls again.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        inner.register(self._read_fd, READ)

    def register(self, fd: Any, events: int) -> Any:
        return self._inner.register(fd, events)

    def unregister(self, fd: Any) -> Any:
        return self._inner.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]] | None:
        events = self._inner.poll(timeout)
        if not events:
            return events
        ready = [event for event in events if event[0] != self._read_fd]
        if len(ready) != len(events):
            with contextlib.suppress(BlockingIOError):
                while os.read(self._read_fd, 512):
                    pass
        return ready

    def wake(self) -> None:
        # A full pipe is already readable: the poll will return anyway.
        with contextlib.suppress(BlockingIOError):
            os.write(self._write_fd, b"\0")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._inner.unregister(self._read_fd)
        os.close(self._read_fd)
        os.close(self._write_fd)
        self._inner.close()


def _wake_consumer(message: Any) -> None:
    if detect_environment() != "gevent":
        return
    transport = getattr(getattr(message, "channel", None), "connection", None)
    cycle: Any = getattr(transport, "cycle", None)
    poller = getattr(cycle, "poller", None)
    if cycle is None or poller is None:
        return
    if not isinstance(poller, _WakeablePoller):
        # Installed at the first acknowledgement: the poll running now ends at its own
        # timeout, every later one can be woken.
        poller = cycle.poller = _WakeablePoller(poller)
    poller.wake()

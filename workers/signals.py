"""Signals of the calls a batch message carries, for the observer.

Celery's task signals speak of messages: one ``task_success`` for a batch of sixteen calls.
The batch task sends these for its calls, with what the observer reads from Celery's signals
for a call that travelled alone, so each call of a batch is counted, priced and written to
the ledger like any other.
"""

from __future__ import annotations

from celery.utils.dispatch import Signal

__all__ = ["call_retried", "calls_succeeded"]

#: Calls' results are stored (together); ``results`` is their list of JobResult wire dicts.
calls_succeeded = Signal(name="blueprint_calls_succeeded")
#: A call is sent back for another attempt; ``job_id`` and ``reason`` (the FaasError).
call_retried = Signal(name="blueprint_call_retried")

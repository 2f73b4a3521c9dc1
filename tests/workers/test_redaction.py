"""What Flower and logs see of a call: its shape, never its payload or metadata values."""

from __future__ import annotations

import logging

from dispatcher import JobCall
from dispatcher._celery_client import argsrepr
from workers import redaction


def test_the_worker_summary_matches_the_runners_and_hides_values() -> None:
    call = JobCall(3, b"secret-bytes!", metadata={"api_token": "xyz", "block": 9})
    summary = redaction.summarize_call([call.to_wire()])
    assert summary == argsrepr(call)
    assert "secret" not in summary and "xyz" not in summary and "api_token" in summary
    assert redaction.summarize_call("junk") == "<malformed call>"


def test_a_retried_message_gets_a_redactedargsrepr() -> None:
    call = JobCall(1, b"payload", metadata={"k": "v"})
    headers: dict[str, object] = {"argsrepr": repr([call.to_wire()])}
    redaction._redact_published(
        sender="blueprint_faas.execute", body=([call.to_wire()], {}, {}), headers=headers
    )
    assert headers["argsrepr"] == argsrepr(call) and headers["kwargsrepr"] == "{}"


def test_the_succeeded_log_line_hides_the_result() -> None:
    redaction.install()
    record = logging.LogRecord(
        "celery.app.trace",
        logging.INFO,
        "",
        0,
        "Task %(name)s succeeded: %(return_value)s",
        None,
        None,
    )
    record.args = {"name": "t", "return_value": "{'body': 'c2VjcmV0'}"}
    for log_filter in logging.getLogger("celery.app.trace").filters:
        log_filter.filter(record)  # type: ignore[union-attr]
    assert "c2VjcmV0" not in record.getMessage()

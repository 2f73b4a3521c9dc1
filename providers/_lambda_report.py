"""Lambda's REPORT line: what an invocation really cost, read from the tail of its log.

A synchronous invoke with ``LogType=Tail`` returns the last 4 KB of the execution's log,
base64, in ``X-Amz-Log-Result``. Its last ``REPORT RequestId: ...`` line is tab-separated
``Name: value unit`` fields::

    REPORT RequestId: 3d9...\tDuration: 15.74 ms\tBilled Duration: 147 ms\tMemory Size: 128 MB
    \tMax Memory Used: 56 MB\tInit Duration: 130.49 ms

``Init Duration`` is there only on a cold start; a SnapStart restore shows ``Restore
Duration`` instead. A timed-out run adds ``Status: timeout`` (a failed one ``Status: error``).
The fields a line lacks stay None: no figure is made up.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["LambdaReport", "parse_log_tail", "parse_report_line"]

_REPORT_PREFIX = "REPORT RequestId:"
_FIELD = re.compile(r"^\s*([A-Za-z][A-Za-z ]*?):\s*(\S+)(?:\s+(ms|MB))?\s*$")


@dataclass(frozen=True, slots=True)
class LambdaReport:
    """The figures of one REPORT line (durations in ms, memory in MB)."""

    duration_ms: float | None = None
    billed_duration_ms: float | None = None
    memory_size_mb: float | None = None
    max_memory_used_mb: float | None = None
    init_duration_ms: float | None = None
    restore_duration_ms: float | None = None
    status: str | None = None

    @property
    def cold_start(self) -> bool:
        """True exactly when the environment was started (or restored) for this invocation."""
        return self.init_duration_ms is not None or self.restore_duration_ms is not None


_NUMBER_FIELDS = {
    "Duration": "duration_ms",
    "Billed Duration": "billed_duration_ms",
    "Memory Size": "memory_size_mb",
    "Max Memory Used": "max_memory_used_mb",
    "Init Duration": "init_duration_ms",
    "Restore Duration": "restore_duration_ms",
}


def parse_log_tail(log_result: str | None) -> LambdaReport | None:
    """The last REPORT line of a base64 ``LogResult``, or None when it holds none.

    A tail that is not base64 or not text holds no report: the invocation's answer is still
    good, and the metrics fall back to what the function reports itself.
    """
    if not log_result:
        return None
    try:
        text = base64.b64decode(log_result, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return None
    for line in reversed(text.splitlines()):
        if line.startswith(_REPORT_PREFIX):
            return parse_report_line(line)
    return None


def parse_report_line(line: str) -> LambdaReport:
    """Read one ``REPORT RequestId: ...`` line; fields it lacks or garbles stay None."""
    values: dict[str, Any] = {}
    for field in line.split("\t")[1:]:
        match = _FIELD.match(field)
        if match is None:
            continue
        name, value = match.group(1), match.group(2)
        if name == "Status":
            values["status"] = value
        elif name in _NUMBER_FIELDS:
            try:
                values[_NUMBER_FIELDS[name]] = float(value)
            except ValueError:
                continue
    return LambdaReport(**values)

"""Reading Lambda's REPORT line: the real duration, bill, memory and cold start of a run."""

from __future__ import annotations

import base64

import pytest

from providers._lambda_report import LambdaReport, parse_log_tail, parse_report_line

# The documented examples (https://docs.aws.amazon.com/lambda/latest/dg/python-logging.html),
# tab-separated as Lambda writes them, with the trailing tab.
COLD = (
    "REPORT RequestId: 3d9c6a33-6b3a-4bcb-b5c8-8b5c7e6a2b1f\tDuration: 15.74 ms\t"
    "Billed Duration: 147 ms\tMemory Size: 128 MB\tMax Memory Used: 56 MB\t"
    "Init Duration: 130.49 ms\t"
)
WARM = (
    "REPORT RequestId: 8f5be2d5-4d0a-4f7a-9a8e-1f4c3c1e0e11\tDuration: 2.16 ms\t"
    "Billed Duration: 3 ms\tMemory Size: 128 MB\tMax Memory Used: 57 MB\t"
)
RESTORED = (
    "REPORT RequestId: 0b0a5e57-17a9-4b67-9d2e-6f5d2c1b9e10\tDuration: 20.01 ms\t"
    "Billed Duration: 21 ms\tMemory Size: 512 MB\tMax Memory Used: 90 MB\t"
    "Restore Duration: 312.40 ms\tBilled Restore Duration: 190 ms\t"
)
TIMED_OUT = (
    "REPORT RequestId: 5a1c3f10-8c44-4a35-9e0f-43d6b7d7b0a2\tDuration: 1000.00 ms\t"
    "Billed Duration: 1000 ms\tMemory Size: 256 MB\tMax Memory Used: 40 MB\tStatus: timeout"
)


def tail(*lines: str) -> str:
    return base64.b64encode("\n".join(lines).encode()).decode()


def test_a_cold_report_gives_every_figure_and_the_init_duration() -> None:
    report = parse_report_line(COLD)

    assert report == LambdaReport(
        duration_ms=15.74,
        billed_duration_ms=147.0,
        memory_size_mb=128.0,
        max_memory_used_mb=56.0,
        init_duration_ms=130.49,
    )
    assert report.cold_start is True


def test_a_warm_report_has_no_init_duration_and_is_not_a_cold_start() -> None:
    report = parse_report_line(WARM)

    assert (report.duration_ms, report.billed_duration_ms) == (2.16, 3.0)
    assert report.init_duration_ms is None
    assert report.cold_start is False


def test_a_snapstart_restore_is_a_cold_start_too() -> None:
    report = parse_report_line(RESTORED)

    assert report.restore_duration_ms == 312.4
    assert report.cold_start is True


def test_a_timed_out_run_says_so_in_its_status() -> None:
    assert parse_report_line(TIMED_OUT).status == "timeout"


def test_the_last_report_of_the_tail_is_read_among_other_log_lines() -> None:
    log = tail(
        "START RequestId: 8f5be2d5 Version: $LATEST",
        "[INFO] the job printed this\tREPORT RequestId: not at the start",
        COLD,
        "END RequestId: 8f5be2d5",
        WARM,
        "XRAY TraceId: 1-5e1b4151-5ac6c58f5b5daa6532e4f2e8\tSegmentId: 6b2d9b3b7f1c4e5a",
    )

    assert parse_log_tail(log) == parse_report_line(WARM)


@pytest.mark.parametrize(
    "log_result",
    [None, "", tail("START RequestId: x", "END RequestId: x"), "not base64 at all!"],
)
def test_a_tail_without_a_report_gives_none(log_result: str | None) -> None:
    assert parse_log_tail(log_result) is None


def test_garbled_fields_stay_none_and_spoil_nothing_else() -> None:
    report = parse_report_line(
        "REPORT RequestId: x\tDuration: fast ms\tBilled Duration: 3 ms\tnonsense\t"
    )

    assert report == LambdaReport(billed_duration_ms=3.0)

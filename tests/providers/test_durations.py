"""Durations given as seconds or timedeltas, converted once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from providers._durations import to_seconds


@pytest.mark.parametrize(
    ("value", "expected_s"),
    [(3, 3.0), (2.5, 2.5), (timedelta(minutes=1), 60.0)],
)
def test_to_seconds_takes_numbers_and_timedeltas(value: float, expected_s: float) -> None:
    assert to_seconds(value) == expected_s


def test_to_seconds_refuses_a_negative_duration() -> None:
    with pytest.raises(ValueError):
        to_seconds(-1)

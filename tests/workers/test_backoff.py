"""The pure backoff function."""

from __future__ import annotations

import pytest

from workers import compute_backoff_s


def test_the_ceiling_doubles_per_retry_up_to_the_cap() -> None:
    top = [compute_backoff_s(n, base_s=0.5, cap_s=3, rand=lambda: 0.999999) for n in range(5)]
    assert [round(t, 3) for t in top] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_full_jitter_may_draw_zero() -> None:
    assert compute_backoff_s(3, base_s=1, cap_s=30, rand=lambda: 0.0) == 0.0


def test_retry_after_is_a_floor_capped_by_the_cap() -> None:
    assert compute_backoff_s(0, base_s=0.1, cap_s=30, retry_after_s=5, rand=lambda: 0.5) == 5
    assert compute_backoff_s(0, base_s=0.1, cap_s=2, retry_after_s=5, rand=lambda: 0.5) == 2


def test_huge_retry_counts_do_not_overflow() -> None:
    assert compute_backoff_s(5000, base_s=1, cap_s=10, rand=lambda: 0.5) == 5


def test_negative_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        compute_backoff_s(-1, base_s=1, cap_s=1)

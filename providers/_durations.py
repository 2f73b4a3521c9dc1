"""Durations accepted as seconds or timedeltas at the edge, converted once to seconds."""

from __future__ import annotations

from datetime import timedelta

__all__ = ["to_seconds"]


def to_seconds(value: float | timedelta) -> float:
    """Convert a duration given as seconds or a timedelta to seconds, once, at the edge.

    Raises
    ------
    ValueError
        ``value`` is negative.
    """
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {seconds} s")
    return seconds

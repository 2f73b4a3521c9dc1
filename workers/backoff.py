"""How long to wait before retrying a call: exponential backoff with full jitter.

Full jitter (a uniform draw below the exponential ceiling) spreads the retries of calls that
failed together, so a throttled provider is not hit again by all of them at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["compute_backoff_s"]


def compute_backoff_s(
    retries: int,
    *,
    base_s: float,
    cap_s: float,
    retry_after_s: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """The countdown before retry number ``retries + 1``.

    Parameters
    ----------
    retries:
        Retries already made (0 before the first retry).
    base_s, cap_s:
        The ceiling is ``min(cap_s, base_s * 2**retries)``; the delay is drawn in
        ``[0, ceiling)``.
    retry_after_s:
        The provider's Retry-After: a floor for the delay, itself capped at ``cap_s`` so a
        waiting retry never outlives the broker's visibility timeout.
    rand:
        A source of floats in ``[0, 1)`` (tests pass a constant).

    Raises
    ------
    ValueError
        ``retries`` or a duration is negative.
    """
    if retries < 0 or base_s < 0 or cap_s < 0:
        raise ValueError("retries, base_s and cap_s must not be negative")
    # 2**retries overflows a float past ~1024 retries; the cap is reached long before.
    ceiling_s = min(cap_s, base_s * 2 ** min(retries, 64))
    delay_s = rand() * ceiling_s
    if retry_after_s is not None and retry_after_s > 0:
        delay_s = max(delay_s, min(retry_after_s, cap_s))
    return delay_s

"""The incredible-squaring job: a u64 in, its square out.

Standard library only, because the same file is shipped to the FaaS platform as the
function's handler (``_squaring:square``) and runs there on a bare Python.
"""

from __future__ import annotations

U64_BYTES = 8
SQUARE_BYTES = 16


def square(args: bytes) -> bytes:
    """Square a big-endian u64; the answer is a big-endian u128, so it never overflows."""
    if len(args) != U64_BYTES:
        raise ValueError(f"expected {U64_BYTES} bytes (a big-endian u64), got {len(args)}")
    x = int.from_bytes(args, "big")
    return (x * x).to_bytes(SQUARE_BYTES, "big")

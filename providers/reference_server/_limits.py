"""Operator limits of the reference server, as one frozen value object.

The defaults are the limits the Custom FaaS contract tells a platform to enforce, plus the
knobs a single-box operator needs (warm pool lifetime, queue bound, payload caps).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_INVOKE_BYTES",
    "DEFAULT_MAX_OUTPUT_BYTES",
    "DEFAULT_MAX_QUEUED_PER_FUNCTION",
    "DEFAULT_MAX_UNCOMPRESSED_BYTES",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_MAX_WARM_INSTANCES",
    "DEFAULT_WARM_IDLE_TTL_S",
    "ServerLimits",
]

_MIB = 1024 * 1024

DEFAULT_MAX_UPLOAD_BYTES = 50 * _MIB
DEFAULT_MAX_UNCOMPRESSED_BYTES = 250 * _MIB
DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_INVOKE_BYTES = 64 * _MIB
DEFAULT_MAX_OUTPUT_BYTES = 64 * _MIB
DEFAULT_WARM_IDLE_TTL_S = 600.0
DEFAULT_MAX_QUEUED_PER_FUNCTION = 1_000
DEFAULT_MAX_WARM_INSTANCES = 64


@dataclass(frozen=True)
class ServerLimits:
    """Limits the server enforces on packages, payloads and processes.

    Parameters
    ----------
    max_upload_bytes:
        Largest accepted deploy body (the zip as sent). Enforced while streaming.
    max_uncompressed_bytes:
        Largest total size of the extracted package, checked against both the sizes the zip
        declares and the bytes actually written (a zip bomb can lie about the former).
    max_entries:
        Most entries (files and folders) a package may hold.
    max_invoke_bytes:
        Largest accepted invoke request body.
    max_output_bytes:
        Most bytes a bootstrap may write to stdout for one invocation; past it the process is
        killed and the invocation fails.
    warm_idle_ttl_s:
        How long pre-started instances stay alive while no invocation uses the pool.
    max_queued_per_function:
        Invocations allowed to wait for a free slot once a function runs `max_concurrency`
        invocations; past it the server answers 429 with Retry-After.
    max_warm_instances:
        Upper bound for `warm?instances=N`, on top of the function's `max_concurrency`.
    """

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES
    max_entries: int = DEFAULT_MAX_ENTRIES
    max_invoke_bytes: int = DEFAULT_MAX_INVOKE_BYTES
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    warm_idle_ttl_s: float = DEFAULT_WARM_IDLE_TTL_S
    max_queued_per_function: int = DEFAULT_MAX_QUEUED_PER_FUNCTION
    max_warm_instances: int = DEFAULT_MAX_WARM_INSTANCES

    def __post_init__(self) -> None:
        # A zero or negative limit would silently turn the server into one that rejects
        # everything (or, for the TTL, kills warm instances at once): refuse it at start-up.
        for name in (
            "max_upload_bytes",
            "max_uncompressed_bytes",
            "max_entries",
            "max_invoke_bytes",
            "max_output_bytes",
            "max_warm_instances",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.warm_idle_ttl_s <= 0:
            raise ValueError("warm_idle_ttl_s must be positive")
        if self.max_queued_per_function < 0:
            raise ValueError("max_queued_per_function must be zero or more")


DEFAULT_LIMITS = ServerLimits()

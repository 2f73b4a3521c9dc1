"""The one error tree every executor raises.

What the caller does next decides the family, so the tree is grouped by that::

    FaasError                      retryable, retry_after_s, provider, status
    ├── TransientFaasError         retry with backoff
    │   ├── InvocationFailed       transport: connection refused, reset, DNS
    │   ├── FaasTimeout            the call or the function ran past its deadline
    │   ├── Throttled              429 / 503: honour ``retry_after_s``
    │   └── InfrastructureError    control plane 5xx (a 4xx one is built non-retryable)
    └── PermanentFaasError         retrying cannot help
        ├── FunctionError          the job itself failed
        ├── SerializationError     a payload or reply that cannot be encoded or decoded
        ├── AuthError              401 / 403, missing or refused credentials
        ├── NotDeployed            404: no function for this job
        ├── PayloadTooLarge        413 or over the provider's documented cap
        ├── AlreadyDeployed        409 on deploy
        └── InvalidConfig          a config the provider cannot honour

Vendor errors are translated once, at each provider's boundary, and the original exception is
kept as ``__cause__``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AlreadyDeployed",
    "AuthError",
    "ErrorKind",
    "FaasError",
    "FaasTimeout",
    "FunctionError",
    "InfrastructureError",
    "InvalidConfig",
    "InvocationFailed",
    "NotDeployed",
    "PayloadTooLarge",
    "PermanentFaasError",
    "SerializationError",
    "Throttled",
    "TransientFaasError",
]


class ErrorKind(StrEnum):
    """Stable machine names of the error kinds, used in results, logs and metrics labels."""

    INVOCATION_FAILED = "invocation_failed"
    TIMEOUT = "timeout"
    THROTTLED = "throttled"
    INFRASTRUCTURE = "infrastructure"
    FUNCTION_ERROR = "function_error"
    SERIALIZATION = "serialization"
    AUTH = "auth"
    NOT_DEPLOYED = "not_deployed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    ALREADY_DEPLOYED = "already_deployed"
    INVALID_CONFIG = "invalid_config"


class FaasError(Exception):
    """Base of every executor error.

    Parameters
    ----------
    message:
        Human-readable; must never contain credentials or payload bytes.
    provider:
        ``provider_name`` of the executor that raised it.
    status:
        The HTTP status (or equivalent) that caused it, when there was one.
    retry_after_s:
        How long the provider asked us to wait before trying again.
    retryable:
        Overrides the family default; used for control-plane errors whose retryability
        depends on the status.
    """

    kind: ErrorKind
    default_retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        retry_after_s: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status
        self.retry_after_s = retry_after_s
        self.retryable = self.default_retryable if retryable is None else retryable

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, provider={self.provider!r}, "
            f"status={self.status!r}, retryable={self.retryable!r})"
        )


class TransientFaasError(FaasError):
    """A failure that may go away by itself: the worker retries it with backoff."""

    default_retryable = True


class PermanentFaasError(FaasError):
    """A failure that the same call would hit again: reported at once, never retried."""


class InvocationFailed(TransientFaasError):
    kind = ErrorKind.INVOCATION_FAILED


class FaasTimeout(TransientFaasError):
    kind = ErrorKind.TIMEOUT


class Throttled(TransientFaasError):
    kind = ErrorKind.THROTTLED


class InfrastructureError(TransientFaasError):
    """A control-plane failure; build it with ``retryable=False`` for a 4xx."""

    kind = ErrorKind.INFRASTRUCTURE


class FunctionError(PermanentFaasError):
    kind = ErrorKind.FUNCTION_ERROR


class SerializationError(PermanentFaasError):
    kind = ErrorKind.SERIALIZATION


class AuthError(PermanentFaasError):
    kind = ErrorKind.AUTH


class NotDeployed(PermanentFaasError):
    kind = ErrorKind.NOT_DEPLOYED


class PayloadTooLarge(PermanentFaasError):
    kind = ErrorKind.PAYLOAD_TOO_LARGE


class AlreadyDeployed(PermanentFaasError):
    kind = ErrorKind.ALREADY_DEPLOYED


class InvalidConfig(PermanentFaasError):
    kind = ErrorKind.INVALID_CONFIG

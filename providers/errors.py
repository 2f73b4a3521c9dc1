"""The one error tree every executor raises.

What the caller does next decides the family, so the tree is grouped by that::

    FaasError                      retryable, retry_after_s, provider, status
    ├── TransientFaasError         retry with backoff
    │   ├── InvocationFailed       transport: connection refused, reset, DNS
    │   ├── FaasTimeout            the call or the function ran past its deadline
    │   ├── Throttled              429 / 503: honour ``retry_after_s``
    │   └── TransientInfrastructureError   control plane 5xx, an operation in progress
    └── PermanentFaasError         retrying cannot help
        ├── PermanentInfrastructureError   control plane 4xx, a failed operation
        ├── FunctionError          the job itself failed
        ├── SerializationError     a payload or reply that cannot be encoded or decoded
        ├── AuthError              401 / 403, missing or refused credentials
        ├── NotDeployed            404: no function for this job
        ├── PayloadTooLarge        413 or over the provider's documented cap
        ├── AlreadyDeployed        409 on deploy
        └── InvalidConfig          a config the provider cannot honour

Both infrastructure classes are also :class:`InfrastructureError`, so ``except
InfrastructureError`` catches control-plane failures of either family. Retryability is the
family and nothing else: ``error.retryable == isinstance(error, TransientFaasError)``.

Vendor errors are translated once, at each provider's boundary, and the original exception is
kept as ``__cause__``.

:class:`ErrorKind` is the one vocabulary of failure kinds: the providers' and the
dispatcher's own (unknown job, malformed call, worker failure, publish failed), so a
``JobError.kind`` is always one of its members.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

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
    "PermanentInfrastructureError",
    "SerializationError",
    "Throttled",
    "TransientFaasError",
    "TransientInfrastructureError",
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
    # The dispatcher's and the workers' own kinds:
    #: No local handler and no FaaS executor for the call's job id.
    UNKNOWN_JOB = "unknown_job"
    #: A task message that is not a JobCall's wire form.
    MALFORMED_CALL = "malformed_call"
    #: The task failed outside the job (time limit, crash): Celery stored a failure.
    WORKER_FAILURE = "worker_failure"
    #: The runner could not publish the call: the broker stayed unreachable through every retry.
    PUBLISH_FAILED = "publish_failed"
    #: The provider's circuit breaker is open: the call was not sent (retry after the cool-down).
    CIRCUIT_OPEN = "circuit_open"


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
    """

    kind: ErrorKind
    #: Whether the worker retries it; set by the family, never per instance.
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status
        self.retry_after_s = retry_after_s

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, provider={self.provider!r}, "
            f"status={self.status!r}, retryable={self.retryable!r})"
        )


class TransientFaasError(FaasError):
    """A failure that may go away by itself: the worker retries it with backoff."""

    retryable = True


class PermanentFaasError(FaasError):
    """A failure that the same call would hit again: reported at once, never retried."""


class InvocationFailed(TransientFaasError):
    kind = ErrorKind.INVOCATION_FAILED


class FaasTimeout(TransientFaasError):
    kind = ErrorKind.TIMEOUT


class Throttled(TransientFaasError):
    kind = ErrorKind.THROTTLED


class InfrastructureError(FaasError):
    """A control-plane failure of either family; raise one of the two subclasses."""

    kind = ErrorKind.INFRASTRUCTURE

    def __new__(cls, *args: object, **kwargs: object) -> Self:
        if cls is InfrastructureError:
            raise TypeError(
                "InfrastructureError has no family: raise TransientInfrastructureError "
                "or PermanentInfrastructureError"
            )
        return super().__new__(cls, *args)


class TransientInfrastructureError(InfrastructureError, TransientFaasError):
    """A control-plane failure that may pass: a 5xx, an operation still in progress."""


class PermanentInfrastructureError(InfrastructureError, PermanentFaasError):
    """A control-plane failure that the same request would hit again: a 4xx, a failed operation."""


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

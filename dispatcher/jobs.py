"""The job model: a call going out to a worker and the result coming back.

Both are frozen records with a wire form (a JSON-safe dict, bytes as base64) because they
travel through Celery's JSON serializer and result backend. Metadata travels both ways, on
the FaaS path too, so a result can always be matched to the call that caused it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Self

from dispatcher.errors import DecodeError, InvalidJobCall
from dispatcher.placement import PlacementReason
from providers.base import FaasMetrics, check_job_id
from providers.errors import ErrorKind, FaasError

__all__ = ["LOCAL", "JobCall", "JobError", "JobResult", "ResultStatus", "checked_job_id"]

#: ``JobResult.ran_on`` of a job run by a local handler.
LOCAL = "local"


class ResultStatus(StrEnum):
    OK = "ok"
    ERROR = "error"


def _new_call_id() -> str:
    return str(uuid.uuid4())


def _frozen_metadata(metadata: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if metadata is None:
        return MappingProxyType({})
    if not isinstance(metadata, Mapping):
        raise InvalidJobCall(f"metadata must be a mapping, got {type(metadata).__name__}")
    for key in metadata:
        if not isinstance(key, str):
            raise InvalidJobCall(f"metadata keys must be str, got {key!r}")
    try:
        # Standard JSON only: what every serializer on the way (task message, result) keeps.
        json.dumps(metadata, allow_nan=False, default=_mapping_as_dict)
    except (TypeError, ValueError) as error:
        raise InvalidJobCall(f"metadata must be JSON-serialisable: {error}") from None
    return MappingProxyType(dict(metadata))


def _mapping_as_dict(value: object) -> dict[str, Any]:
    # A frozen metadata mapping (a result built from its call's) is a dict on the wire.
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def checked_job_id(job_id: object) -> int:
    """``job_id`` if it is a valid job id (a u32, as the SDK's).

    Raises
    ------
    InvalidJobCall
        It is not.
    """
    try:
        return check_job_id(job_id)
    except (TypeError, ValueError) as error:
        raise InvalidJobCall(str(error)) from error


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    """Decode a base64 field; a ValueError names the field, for the caller's DecodeError."""
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as error:
        raise ValueError(f"{what} is not valid base64") from error


@dataclass(frozen=True, slots=True)
class JobCall:
    """One call of a Blueprint job.

    Parameters
    ----------
    job_id:
        The job's id, an int in ``[0, 2**32)``.
    args:
        The job's input bytes, passed to the handler or function untouched.
    metadata:
        Anything the producer wants back on the result (block number, request id...); must be
        JSON-serialisable. It travels in the task message, so it must not hold secrets.
    call_id:
        Unique id of this call; it is the Celery task id and the idempotency key.

    Raises
    ------
    InvalidJobCall
        A job id that is not an int in range, args that are not bytes, or bad metadata.
    """

    job_id: int
    args: bytes = b""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    call_id: str = field(default_factory=_new_call_id)

    def __post_init__(self) -> None:
        object.__setattr__(self, "job_id", checked_job_id(self.job_id))
        if not isinstance(self.args, bytes | bytearray | memoryview):
            raise InvalidJobCall(f"args must be bytes, got {type(self.args).__name__}")
        object.__setattr__(self, "args", bytes(self.args))
        object.__setattr__(self, "metadata", _frozen_metadata(self.metadata))
        if not isinstance(self.call_id, str) or not self.call_id:
            raise InvalidJobCall("call_id must be a non-empty str")

    def to_wire(self) -> dict[str, Any]:
        """The JSON-safe dict that travels in the task message."""
        return {
            "job_id": self.job_id,
            "args": _b64(self.args),
            "metadata": dict(self.metadata),
            "call_id": self.call_id,
        }

    @classmethod
    def from_wire(cls, wire: object) -> Self:
        """Rebuild a call from its wire form.

        Raises
        ------
        DecodeError
            ``wire`` is not a call's wire form; the raw value is kept on the error.
        """
        if not isinstance(wire, Mapping):
            raise DecodeError("a job call must be a JSON object", wire)
        try:
            return cls(
                job_id=wire["job_id"],
                args=_unb64(wire.get("args", ""), "args"),
                metadata=wire.get("metadata") or {},
                call_id=wire["call_id"],
            )
        except KeyError as error:
            raise DecodeError(f"a job call needs {error.args[0]!r}", wire, error) from error
        except ValueError as error:  # InvalidJobCall is a ValueError too
            raise DecodeError(str(error), wire, error) from error


@dataclass(frozen=True, slots=True)
class JobError:
    """Why a job did not produce a result, in a form consumers can act on.

    ``kind`` is one :class:`~providers.errors.ErrorKind`: a provider's failure keeps its
    error's kind, the dispatcher's own failures have kinds of their own there too.
    """

    kind: ErrorKind
    message: str
    retryable: bool = False
    provider: str | None = None
    status: int | None = None
    #: When a retryable error says how long to wait (a throttle, an open circuit breaker).
    retry_after_s: float | None = None

    @classmethod
    def from_faas_error(cls, error: FaasError) -> Self:
        return cls(
            kind=error.kind,
            message=error.message,
            retryable=error.retryable,
            provider=error.provider,
            status=error.status,
            retry_after_s=error.retry_after_s,
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "retryable": self.retryable,
            "provider": self.provider,
            "status": self.status,
            "retry_after_s": self.retry_after_s,
        }

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(
            kind=ErrorKind(wire["kind"]),
            message=str(wire["message"]),
            retryable=bool(wire.get("retryable", False)),
            provider=wire.get("provider"),
            status=wire.get("status"),
            retry_after_s=wire.get("retry_after_s"),
        )


@dataclass(frozen=True, slots=True)
class JobResult:
    """The outcome of one JobCall, successful or not.

    ``ran_on`` is :data:`LOCAL` or the provider name, and ``placement_reason`` why it ran
    there (its policy, an overflow or a fallback: :mod:`dispatcher.placement`);
    ``attempts`` counts every try, retries included; ``metrics`` is present when a FaaS
    provider ran the job.
    """

    job_id: int
    call_id: str
    ok: bool
    body: bytes = b""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    error: JobError | None = None
    ran_on: str = LOCAL
    attempts: int = 1
    metrics: FaasMetrics | None = None
    placement_reason: PlacementReason = PlacementReason.POLICY

    def __post_init__(self) -> None:
        object.__setattr__(self, "job_id", checked_job_id(self.job_id))
        object.__setattr__(self, "placement_reason", PlacementReason(self.placement_reason))
        if not isinstance(self.body, bytes | bytearray | memoryview):
            raise InvalidJobCall(f"body must be bytes, got {type(self.body).__name__}")
        object.__setattr__(self, "body", bytes(self.body))
        object.__setattr__(self, "metadata", _frozen_metadata(self.metadata))
        if self.ok and self.error is not None:
            raise InvalidJobCall("a successful result cannot carry an error")
        if not self.ok and self.error is None:
            raise InvalidJobCall("a failed result needs an error")

    @property
    def status(self) -> ResultStatus:
        return ResultStatus.OK if self.ok else ResultStatus.ERROR

    @classmethod
    def success(
        cls,
        call: JobCall,
        body: bytes,
        *,
        ran_on: str = LOCAL,
        attempts: int = 1,
        metrics: FaasMetrics | None = None,
        placement_reason: PlacementReason = PlacementReason.POLICY,
    ) -> Self:
        """The result of ``call`` that produced ``body``."""
        return cls(
            job_id=call.job_id,
            call_id=call.call_id,
            ok=True,
            body=body,
            metadata=call.metadata,
            ran_on=ran_on,
            attempts=attempts,
            metrics=metrics,
            placement_reason=placement_reason,
        )

    @classmethod
    def failure(
        cls,
        call: JobCall,
        error: JobError,
        *,
        ran_on: str = LOCAL,
        attempts: int = 1,
        metrics: FaasMetrics | None = None,
        placement_reason: PlacementReason = PlacementReason.POLICY,
    ) -> Self:
        """The result of ``call`` that failed with ``error``."""
        return cls(
            job_id=call.job_id,
            call_id=call.call_id,
            ok=False,
            error=error,
            metadata=call.metadata,
            ran_on=ran_on,
            attempts=attempts,
            metrics=metrics,
            placement_reason=placement_reason,
        )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-safe dict stored in the result backend."""
        metrics = self.metrics
        return {
            "job_id": self.job_id,
            "call_id": self.call_id,
            "ok": self.ok,
            "body": _b64(self.body),
            "metadata": dict(self.metadata),
            "error": None if self.error is None else self.error.to_wire(),
            "ran_on": self.ran_on,
            "placement_reason": self.placement_reason,
            "attempts": self.attempts,
            # Every field, so one added to FaasMetrics cannot be dropped on the wire.
            "metrics": None if metrics is None else dataclasses.asdict(metrics),
        }

    @classmethod
    def from_wire(cls, wire: object) -> Self:
        """Rebuild a result from its wire form.

        Raises
        ------
        DecodeError
            ``wire`` is not a result's wire form; the raw value is kept on the error.
        """
        if not isinstance(wire, Mapping):
            raise DecodeError("a job result must be a JSON object", wire)
        try:
            error = wire.get("error")
            metrics = wire.get("metrics")
            return cls(
                job_id=wire["job_id"],
                call_id=wire["call_id"],
                ok=bool(wire["ok"]),
                body=_unb64(wire.get("body", ""), "body"),
                metadata=wire.get("metadata") or {},
                error=None if error is None else JobError.from_wire(error),
                ran_on=str(wire.get("ran_on", LOCAL)),
                attempts=int(wire.get("attempts", 1)),
                metrics=None if metrics is None else FaasMetrics(**metrics),
                placement_reason=PlacementReason(
                    wire.get("placement_reason", PlacementReason.POLICY)
                ),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise DecodeError(f"not a job result: {error}", wire, error) from error

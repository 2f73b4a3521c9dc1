"""Errors raised by the dispatcher side: bad calls, unknown jobs, undecodable messages."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DecodeError",
    "DispatcherError",
    "InvalidJobCall",
    "NotAFaasJob",
    "ProviderMismatch",
    "UnknownJob",
]


class DispatcherError(Exception):
    """Base of every error the dispatcher raises itself."""


class InvalidJobCall(DispatcherError, ValueError):
    """A JobCall or JobResult built from values that cannot be one (bad job id, args not bytes)."""


class UnknownJob(DispatcherError, LookupError):
    """No local handler and no FaaS executor is registered for a job id."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"no handler or FaaS executor is registered for job {job_id}")
        self.job_id = job_id


class DecodeError(DispatcherError):
    """A message off the wire could not be decoded; keeps the raw value and the cause."""

    def __init__(self, message: str, raw: object, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.raw = raw
        self.__cause__ = cause


class ConfigError(DispatcherError):
    """Settings or an app definition that cannot work (unknown key, bad URL, bad module)."""


class NotAFaasJob(DispatcherError, LookupError):
    """A FaaS operation (deploy, warm, health...) on a job that runs locally."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} runs locally: it has no FaaS executor")
        self.job_id = job_id


class ProviderMismatch(DispatcherError):
    """The provider named for an operation is not the one the app registered for the job."""

    def __init__(self, job_id: int, expected: str, given: str) -> None:
        super().__init__(
            f"job {job_id} runs on provider {expected!r}, not {given!r} (see the app's registry)"
        )
        self.job_id = job_id
        self.expected = expected
        self.given = given

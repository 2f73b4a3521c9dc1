"""Errors raised by the dispatcher side: bad calls, unknown jobs, undecodable messages."""

from __future__ import annotations

__all__ = ["ConfigError", "DecodeError", "DispatcherError", "InvalidJobCall", "UnknownJob"]


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

"""What a provider accepts, as data: memory, timeout, payload, package, concurrency, env vars.

Each provider declares one :class:`ProviderLimits` (its documented quotas) and the executor's
base class checks every deploy and every invoke against it before any network call, so no
provider module repeats the checks, and a config the provider would refuse fails here with
the field, the value and the limit named.

``None`` means "no limit we know of"; the provider may still refuse at its end, which the
executor maps to a typed error as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from providers.base import FaasConfig

__all__ = [
    "NO_LIMITS",
    "LimitViolation",
    "ProviderLimits",
    "json_request_size",
    "limits_over",
]

_Size = Annotated[int, Field(ge=1)]
# The envelope of the request every generated entry point reads (design notes, "Providers"):
# ``{"job_id":<id>,"args":[<byte>,...]}``, compact, as pydantic-core's to_json writes it.
_ENVELOPE_BYTES = len('{"job_id":,"args":[]}')
_BELOW_10 = bytes(range(10))
_BELOW_100 = bytes(range(100))


class ProviderLimits(BaseModel):
    """One provider's documented limits on what a function may be and what a call may carry.

    Frozen, compared by value; every field but the memory floor and step may be None (no
    limit known). A provider module declares one instance; options may override fields
    (:func:`limits_over`).

    Raises
    ------
    pydantic.ValidationError
        A field is not a positive integer, or the memory range is empty.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Smallest memory a function may have.
    min_memory_mb: _Size = 1
    #: Largest memory a function may have.
    max_memory_mb: _Size | None = None
    #: Memory must be a multiple of this.
    memory_step_mb: _Size = 1
    #: When not empty, the only memory sizes the provider offers (the range and step then
    #: matter no more).
    memory_sizes_mb: tuple[_Size, ...] = ()
    #: Longest ``timeout_secs`` the provider runs a function for.
    max_timeout_secs: _Size | None = None
    #: Longest a *synchronous* invocation may last, when the provider cuts it before the
    #: function's own timeout (Azure's HTTP triggers answer within 230 s). Every invocation
    #: here is synchronous, so ``timeout_secs`` is checked against it too.
    max_sync_timeout_secs: _Size | None = None
    #: Largest deployment package (the zip as uploaded).
    max_package_bytes: _Size | None = None
    #: Largest invoke request as the provider receives it (encoded, envelope included).
    max_request_bytes: _Size | None = None
    #: Largest reply the provider passes back; the function's output must stay below it.
    max_response_bytes: _Size | None = None
    #: Highest ``max_concurrency`` one function may ask for.
    max_concurrency: _Size | None = None
    #: Invocations the provider runs at once across an account, region or namespace: the
    #: budget concurrency leases are sized by.
    max_account_concurrency: _Size | None = None
    #: Most environment variables a function may have.
    max_env_vars: _Size | None = None
    #: Largest total of names and values (UTF-8 bytes) of a function's environment.
    max_env_total_bytes: _Size | None = None
    #: Longest single environment value, in characters.
    max_env_value_chars: _Size | None = None

    @model_validator(mode="after")
    def _memory_range_is_not_empty(self) -> ProviderLimits:
        if self.max_memory_mb is not None and self.max_memory_mb < self.min_memory_mb:
            raise ValueError("max_memory_mb is below min_memory_mb")
        return self

    def violations(self, config: FaasConfig) -> list[LimitViolation]:
        """Every way ``config`` breaks these limits, in field order (empty when it fits).

        Messages name the field, its value and the limit; environment values are never
        quoted (they may be secrets), only counted.
        """
        found = [*self._memory_violations(config.memory_mb), *self._timeout_violations(config)]
        if self.max_concurrency is not None and (config.max_concurrency or 0) > (
            self.max_concurrency
        ):
            found.append(
                LimitViolation(
                    "max_concurrency",
                    f"max_concurrency={config.max_concurrency} is above the limit of "
                    f"{self.max_concurrency}",
                )
            )
        found.extend(self._env_violations(config.env_vars))
        return found

    def package_violation(self, size_bytes: int) -> LimitViolation | None:
        """The violation of a package of ``size_bytes``, or None when it fits."""
        if self.max_package_bytes is not None and size_bytes > self.max_package_bytes:
            return LimitViolation(
                "package",
                f"the package of {size_bytes} bytes is over the limit of "
                f"{self.max_package_bytes} bytes",
            )
        return None

    def _memory_violations(self, memory_mb: int) -> list[LimitViolation]:
        def violation(rule: str) -> list[LimitViolation]:
            return [LimitViolation("memory_mb", f"memory_mb={memory_mb} {rule}")]

        if self.memory_sizes_mb:
            if memory_mb not in self.memory_sizes_mb:
                return violation(f"is not one of the sizes offered: {list(self.memory_sizes_mb)}")
            return []
        if memory_mb < self.min_memory_mb:
            return violation(f"is below the minimum of {self.min_memory_mb} MB")
        if self.max_memory_mb is not None and memory_mb > self.max_memory_mb:
            return violation(f"is above the maximum of {self.max_memory_mb} MB")
        if memory_mb % self.memory_step_mb:
            return violation(f"is not a multiple of {self.memory_step_mb} MB")
        return []

    def _timeout_violations(self, config: FaasConfig) -> list[LimitViolation]:
        timeout = config.timeout_secs
        if self.max_timeout_secs is not None and timeout > self.max_timeout_secs:
            rule = f"is above the maximum of {self.max_timeout_secs} s"
        elif self.max_sync_timeout_secs is not None and timeout > self.max_sync_timeout_secs:
            rule = f"is above the {self.max_sync_timeout_secs} s cut of a synchronous invocation"
        else:
            return []
        return [LimitViolation("timeout_secs", f"timeout_secs={timeout} {rule}")]

    def _env_violations(self, env_vars: Mapping[str, str]) -> list[LimitViolation]:
        found: list[LimitViolation] = []
        if self.max_env_vars is not None and len(env_vars) > self.max_env_vars:
            found.append(
                LimitViolation(
                    "env_vars",
                    f"{len(env_vars)} environment variables are over the limit of "
                    f"{self.max_env_vars}",
                )
            )
        total = sum(len(name.encode()) + len(value.encode()) for name, value in env_vars.items())
        if self.max_env_total_bytes is not None and total > self.max_env_total_bytes:
            found.append(
                LimitViolation(
                    "env_vars",
                    f"the environment's {total} bytes are over the limit of "
                    f"{self.max_env_total_bytes} bytes",
                )
            )
        if self.max_env_value_chars is not None:
            found.extend(
                LimitViolation(
                    "env_vars",
                    f"the value of {name} ({len(value)} characters) is over the limit of "
                    f"{self.max_env_value_chars} characters",
                )
                for name, value in env_vars.items()
                if len(value) > self.max_env_value_chars
            )
        return found


@dataclass(frozen=True, slots=True)
class LimitViolation:
    """One way a function config breaks a provider limit: the field and what is wrong."""

    field: str
    message: str


#: Limits of a provider that documents none (tests, or a platform you know nothing about).
NO_LIMITS = ProviderLimits()


def limits_over(defaults: ProviderLimits) -> Callable[[object], object]:
    """A before-validator that reads a partial ``limits`` table over ``defaults``.

    ``limits = { max_request_bytes = 1048576 }`` in a settings file keeps every other field
    of the provider's own limits; an unknown field is still refused. Use it as::

        limits: Annotated[ProviderLimits, BeforeValidator(limits_over(LIMITS))] = LIMITS
    """

    def over_defaults(value: object) -> object:
        if isinstance(value, Mapping):
            return {**defaults.model_dump(), **value}
        return value

    return over_defaults


def json_request_size(job_id: int, payload: bytes) -> int:
    """Bytes of the JSON request ``{"job_id", "args": [bytes as integers]}`` for ``payload``.

    Counted, not encoded: a byte takes 1, 2 or 3 digits plus a comma, and two C-level
    passes over the payload count the bytes above 9 and above 99. So a payload over the
    cap is refused without building the (up to 4x larger) request first.
    """
    size = len(payload)
    digits = size + len(payload.translate(None, _BELOW_10))
    digits += len(payload.translate(None, _BELOW_100))
    commas = max(size - 1, 0)
    return _ENVELOPE_BYTES + len(str(job_id)) + digits + commas

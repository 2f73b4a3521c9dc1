"""Wire models: function ids, the deploy config header, invoke bodies and bootstrap replies.

Every parse function here raises `ApiError` with a 400 code and a `details.errors` list that
names the offending field; the input values themselves are never echoed (env values may be
secrets).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ._errors import ApiError, ErrorCode

__all__ = [
    "BootstrapReply",
    "FunctionConfig",
    "InvokeRequest",
    "parse_bootstrap_reply",
    "parse_config_header",
    "parse_invoke_request",
    "validate_function_id",
]

_FUNCTION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_MAX_ENV_VARS = 256
_MAX_ENV_VALUE_CHARS = 32_768

MIN_MEMORY_MB = 128
MAX_MEMORY_MB = 10_240
MEMORY_STEP_MB = 64
MAX_JOB_ID = 2**32 - 1

_Byte = Annotated[int, Field(ge=0, le=255)]
# The original SDK's decoder also takes a JSON string in place of the integer array.
_Bytes = list[_Byte] | str


def validate_function_id(function_id: str) -> str:
    """Return `function_id` if it is safe to use as a folder name, else raise a 400.

    The charset excludes `/` and the leading character must be alphanumeric, so `.` and `..`
    (which let the original server delete the data dir's parent) can never pass.
    """
    if _FUNCTION_ID.fullmatch(function_id) is None:
        raise ApiError(
            ErrorCode.INVALID_FUNCTION_ID,
            "function id must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
            details={"pattern": _FUNCTION_ID.pattern},
        )
    return function_id


class FunctionConfig(BaseModel):
    """A function's deploy-time configuration (the decoded `X-Blueprint-Config`)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    memory_mb: int = Field(default=512, ge=MIN_MEMORY_MB, le=MAX_MEMORY_MB)
    timeout_secs: int = Field(default=300, ge=1, le=900)
    max_concurrency: int = Field(default=10, ge=1, le=1000)
    env_vars: dict[str, str] = Field(default_factory=dict, max_length=_MAX_ENV_VARS)

    @field_validator("memory_mb")
    @classmethod
    def _memory_in_steps(cls, value: int) -> int:
        if value % MEMORY_STEP_MB:
            raise ValueError(f"memory_mb must be a multiple of {MEMORY_STEP_MB}")
        return value

    @field_validator("env_vars")
    @classmethod
    def _env_names_and_values(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if _ENV_NAME.fullmatch(name) is None:
                raise ValueError(f"env var name {name!r} must match {_ENV_NAME.pattern}")
            if "\0" in text or len(text) > _MAX_ENV_VALUE_CHARS:
                raise ValueError(
                    f"env var {name!r} value must have no NUL and at most "
                    f"{_MAX_ENV_VALUE_CHARS} characters"
                )
        return value


class InvokeRequest(BaseModel):
    """The invoke body `{"job_id": <u32>, "args": [<byte>, ...]}`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    job_id: int = Field(ge=0, le=MAX_JOB_ID)
    args: _Bytes

    def args_list(self) -> list[int]:
        """The args as byte values, decoding the string form as UTF-8 bytes."""
        return list(self.args.encode()) if isinstance(self.args, str) else self.args


class BootstrapReply(BaseModel):
    """What a bootstrap prints on stdout: `{"result": [...], "success": bool, "error"?}`."""

    model_config = ConfigDict(extra="ignore", strict=True)

    success: bool
    result: _Bytes = Field(default_factory=list)
    error: str | None = None

    def result_list(self) -> list[int]:
        """The result as byte values, decoding the string form as UTF-8 bytes."""
        return list(self.result.encode()) if isinstance(self.result, str) else self.result


def _field_errors(exc: ValidationError) -> list[dict[str, str]]:
    # `include_input=False`: the offending value may be a secret env var.
    return [
        {"field": ".".join(str(part) for part in err["loc"]) or "(body)", "message": err["msg"]}
        for err in exc.errors(include_input=False, include_url=False)
    ]


def parse_config_header(header: str | None) -> FunctionConfig:
    """Decode the base64 JSON `X-Blueprint-Config` header; absent means all defaults.

    Raises
    ------
    ApiError
        INVALID_CONFIG for bad base64, bad JSON, a non-object, unknown keys or values out of
        range. A malformed header is never replaced by defaults.
    """
    if header is None:
        return FunctionConfig()
    try:
        raw = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(
            ErrorCode.INVALID_CONFIG,
            "X-Blueprint-Config is not valid base64",
            details={"reason": "base64"},
        ) from exc
    try:
        decoded: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(
            ErrorCode.INVALID_CONFIG,
            "X-Blueprint-Config does not hold valid UTF-8 JSON",
            details={"reason": "json"},
        ) from exc
    if not isinstance(decoded, dict):
        raise ApiError(
            ErrorCode.INVALID_CONFIG,
            "X-Blueprint-Config must be a JSON object",
            details={"reason": "type"},
        )
    try:
        return FunctionConfig.model_validate(decoded)
    except ValidationError as exc:
        raise ApiError(
            ErrorCode.INVALID_CONFIG,
            "X-Blueprint-Config has invalid fields",
            details={"reason": "fields", "errors": _field_errors(exc)},
        ) from exc


def parse_invoke_request(body: bytes) -> InvokeRequest:
    """Validate an invoke body straight from JSON (in Rust: large args stay cheap).

    Raises
    ------
    ApiError
        INVALID_INVOKE_REQUEST naming the offending fields.
    """
    try:
        return InvokeRequest.model_validate_json(body)
    except ValidationError as exc:
        raise ApiError(
            ErrorCode.INVALID_INVOKE_REQUEST,
            'invoke body must be {"job_id": 0..4294967295, "args": [0..255, ...] | string}',
            details={"errors": _field_errors(exc)},
        ) from exc


def parse_bootstrap_reply(stdout: bytes) -> BootstrapReply:
    """Parse what a bootstrap printed.

    Raises
    ------
    ValueError
        With a short reason when stdout is not the reply object the contract requires.
    """
    try:
        return BootstrapReply.model_validate_json(stdout)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "output"
        raise ValueError(f"invalid bootstrap output ({where}: {first['msg']})") from exc

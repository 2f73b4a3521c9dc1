"""The Cloud Functions v2 API's JSON as the gcp executor reads and writes it.

Replies are strict frozen models with the API's lowerCamelCase names (unknown fields are
ignored: the API adds fields over time); ``availableMemory`` is read in every unit GCP writes;
an update mask is built from the very body that is sent, so it names exactly the fields set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator
from pydantic.alias_generators import to_camel

from providers._replies import OptionalText, Rfc3339Datetime, validate_reply

__all__ = ["Function", "Operation", "RpcStatus", "UploadUrl", "field_paths", "function_in"]

_MIB = 1024 * 1024


def field_paths(body: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The update mask of ``body``: every leaf field path, maps of user keys as leaves.

    ``name`` identifies the function and ``environment`` cannot change; neither is updated.
    """
    paths: list[str] = []
    for key, value in body.items():
        path = f"{prefix}{key}"
        if path in _NOT_UPDATED:
            continue
        if isinstance(value, Mapping) and path not in _LEAF_MAPS:
            paths.extend(field_paths(value, f"{path}."))
        else:
            paths.append(path)
    return paths


_NOT_UPDATED = frozenset({"name", "environment"})
# Maps whose keys are the user's, and the source, which is replaced whole.
_LEAF_MAPS = frozenset({"labels", "buildConfig.source", "serviceConfig.environmentVariables"})

# Memory units GCP writes in availableMemory: decimal (k, M, G) and binary (Mi, Gi); a bare
# number is bytes. Read as MiB, the unit of FaasConfig.memory_mb.
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)(k|M|G|T|Ki|Mi|Gi|Ti)?")
_MEMORY_UNIT_BYTES = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def _memory_mb(value: object) -> int:
    if not isinstance(value, str):
        raise ValueError("must be a memory string such as '512Mi'")
    match = _MEMORY.fullmatch(value.strip())
    if match is None:
        raise ValueError("is not a memory size in k, M, G, Mi, Gi or bytes")
    size_bytes = float(match.group(1)) * _MEMORY_UNIT_BYTES[match.group(2)]
    return round(size_bytes / _MIB)


_MemoryMb = Annotated[int, PlainValidator(_memory_mb)]


class _Wire(BaseModel):
    """The v2 API's JSON: lowerCamelCase names, read strictly, unknown fields ignored."""

    model_config = ConfigDict(
        strict=True, frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class UploadUrl(_Wire):
    upload_url: str
    # Passed back as given into buildConfig.source.storageSource.
    storage_source: dict[str, Any]


class RpcStatus(_Wire):
    """``google.rpc.Status``: the ``error`` of a failed operation."""

    code: int = 2
    message: OptionalText = None


class _ServiceConfig(_Wire):
    uri: OptionalText = None
    # GCP's defaults, for a function that reports none.
    available_memory: _MemoryMb = 256
    timeout_seconds: int = 60


class Function(_Wire):
    name: str
    state: str = "STATE_UNSPECIFIED"
    service_config: _ServiceConfig = Field(default_factory=_ServiceConfig)
    update_time: Rfc3339Datetime | None = None


class Operation(_Wire):
    """A long-running operation: ``error`` or ``response`` (the Function) once ``done``."""

    name: str
    done: bool = False
    error: RpcStatus | None = None
    response: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None

    def progress(self) -> str:
        """The stages in progress, for a timeout's message (``BUILD IN_PROGRESS``)."""
        stages = (self.metadata or {}).get("stages")
        if not isinstance(stages, list):
            return "not done"
        running = [
            f"{stage.get('name')} {stage.get('state')}"
            for stage in stages
            if isinstance(stage, dict) and stage.get("state") != "COMPLETE"
        ]
        return ", ".join(running[:3]) or "not done"


def function_in(operation: Operation) -> Function | None:
    """The Function a finished create or update answers with, when it has a URI."""
    if operation.response is None:
        return None
    function = validate_reply(
        Function, operation.response, provider="gcp", what="the operation's response"
    )
    return function if function.service_config.uri else None

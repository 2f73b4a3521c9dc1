"""What every provider's options model shares: strictness and secrets given by reference.

A provider's options are its executor's constructor arguments as a typed model, so that a
settings file can declare an executor (:func:`providers.registry.create_executor`). Every
options model subclasses :class:`ProviderOptions`, and every secret field is a
:data:`Secret`: given as is, or as ``env:VAR_NAME`` to be read from the environment of the
process that builds the executor (each worker host has its own).
"""

from __future__ import annotations

import os
import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr

__all__ = ["ENV_REFERENCE_PREFIX", "ProviderOptions", "Secret"]

#: A secret written ``env:NAME`` is the value of the environment variable ``NAME``.
ENV_REFERENCE_PREFIX = "env:"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ProviderOptions(BaseModel):
    """Base of every provider's options model.

    Frozen and compared by value (executors with equal options are shared); unknown keys are
    refused, and validation errors never quote the input (it may hold a secret).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


def _resolve_env_reference(value: object) -> object:
    if not isinstance(value, str) or not value.startswith(ENV_REFERENCE_PREFIX):
        return value
    name = value[len(ENV_REFERENCE_PREFIX) :]
    if not _ENV_NAME.fullmatch(name):
        raise ValueError(f"{ENV_REFERENCE_PREFIX}{name} does not name an environment variable")
    resolved = os.environ.get(name)
    if resolved is None:
        # Names the variable, which is not secret; there is no value to leak.
        raise ValueError(f"environment variable {name} is not set")
    return resolved


#: A secret option: never shown in a repr or an error; ``env:NAME`` reads it from ``$NAME``.
Secret = Annotated[SecretStr, BeforeValidator(_resolve_env_reference)]

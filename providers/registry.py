"""Providers by name: what each one declares, found by convention and imported on first use.

A provider is the module ``providers/<name>.py`` that defines ``PROVIDER``, a
:class:`ProviderSpec` naming its executor class, its options model, how to build the
executor from options, its package builder, its price list and the SDK modules it needs.
Its limits are its executor's ``default_limits``. Adding a provider is adding that module:
no table elsewhere names it (see ``docs/design-notes.md``, "Providers as plug-ins").

Nothing here imports a provider module before it is asked for, and a provider module imports
its SDK only when an executor is built, so ``import providers`` needs only the core install.
A provider whose SDK is missing fails at first use with :class:`MissingExtra`, which names
the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from providers.options import ProviderOptions

if TYPE_CHECKING:
    from providers.base import FaasExecutor
    from providers.limits import ProviderLimits
    from providers.packaging import PackageBuilder

__all__ = [
    "SPEC_ATTRIBUTE",
    "MissingExtra",
    "ProviderSpec",
    "UnknownProvider",
    "create_executor",
    "provider_names",
    "provider_spec",
]

#: The module attribute that makes ``providers.<name>`` a provider.
SPEC_ATTRIBUTE = "PROVIDER"

_OptionsT = TypeVar("_OptionsT", bound=ProviderOptions)
_PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_]*")


class UnknownProvider(LookupError):
    """No provider has this name."""

    def __init__(self, name: str) -> None:
        known = ", ".join(provider_names()) or "none"
        super().__init__(f"unknown provider {name!r} (known: {known})")
        self.name = name


class MissingExtra(ImportError):
    """A provider's SDK is not installed; the message says which extra installs it."""

    def __init__(self, provider: str, module: str | None) -> None:
        super().__init__(
            f"provider {provider!r} needs {module or 'its SDK'}, which is not installed: "
            f"pip install 'blueprint-faas[{provider}]'",
            name=module,
        )
        self.provider = provider


@dataclass(frozen=True, slots=True)
class ProviderSpec(Generic[_OptionsT]):
    """Everything the platform needs to know about one provider.

    Parameters
    ----------
    executor:
        The executor class; its ``provider_name`` is the provider's name (and module name),
        its ``default_limits`` the provider's limits.
    options:
        The typed options model: the executor's constructor arguments.
    create:
        Builds an executor from validated options; does no network I/O.
    build_package:
        Packages a Python handler for the provider's runtime.
    price_list:
        The provider's key in :data:`providers.pricing.DEFAULT_PRICE_BOOK`.
    requires:
        Top-level modules of the SDK the executor needs; the extra named after the provider
        installs them.
    """

    executor: type[FaasExecutor]
    options: type[_OptionsT]
    create: Callable[[_OptionsT], FaasExecutor]
    build_package: PackageBuilder
    price_list: str
    requires: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The provider's one name: its module, its executor's ``provider_name``, its extra."""
        return self.executor.provider_name

    @property
    def limits(self) -> ProviderLimits:
        """What the provider accepts by default (options may override it)."""
        return self.executor.default_limits

    def check_installed(self) -> None:
        """Raise :class:`MissingExtra` unless every SDK module the provider needs is there."""
        for module in self.requires:
            try:
                found = importlib.util.find_spec(module)
            except ImportError:
                found = None
            if found is None:
                raise MissingExtra(self.name, module)


def provider_spec(name: str) -> ProviderSpec[Any]:
    """The declaration of the provider called ``name``, importing its module if need be.

    Raises
    ------
    UnknownProvider
        No module ``providers.<name>`` defines a provider.
    MissingExtra
        The provider's module imports an SDK that is not installed.
    """
    if not _PROVIDER_NAME.fullmatch(name):
        raise UnknownProvider(name)
    module_name = f"{__package__}.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            raise UnknownProvider(name) from None
        raise MissingExtra(name, error.name) from error
    spec = _declared_spec(module)
    if spec is None or spec.name != name:
        raise UnknownProvider(name)
    return spec


def provider_names() -> list[str]:
    """The names of every provider this installation ships, sorted.

    A provider module whose own imports fail is still listed: asking for it says why.
    """
    import providers

    names = []
    for info in pkgutil.iter_modules(providers.__path__):
        if info.ispkg or info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{providers.__name__}.{info.name}")
        except ImportError:
            names.append(info.name)
            continue
        if _declared_spec(module) is not None:
            names.append(info.name)
    return sorted(names)


def create_executor(name: str, options: Mapping[str, Any] | ProviderOptions) -> FaasExecutor:
    """Build an executor of provider ``name`` from its options (the original crate's factory).

    Parameters
    ----------
    options:
        The provider's options model, or a mapping validated into it (secrets given as
        ``env:NAME`` are read from the environment now).

    Raises
    ------
    UnknownProvider, MissingExtra
        As :func:`provider_spec`; MissingExtra also when an SDK module the provider
        ``requires`` is not installed.
    pydantic.ValidationError
        ``options`` are not the provider's (unknown key, bad value, unset variable); the
        error names the field, never the value.
    """
    spec = provider_spec(name)
    validated = spec.options.model_validate(options)
    spec.check_installed()
    return spec.create(validated)


def _declared_spec(module: ModuleType) -> ProviderSpec[Any] | None:
    spec = getattr(module, SPEC_ATTRIBUTE, None)
    return spec if isinstance(spec, ProviderSpec) else None

"""The provider registry: every provider complete, found by its name, built from options."""

from __future__ import annotations

import importlib
import io
import zipfile
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from providers.base import FaasExecutor
from providers.custom import CustomOptions, HttpFaasExecutor
from providers.limits import ProviderLimits
from providers.options import ProviderOptions
from providers.packaging import HANDLER_CORE_MODULE
from providers.pricing import DEFAULT_PRICE_BOOK
from providers.registry import (
    MissingExtra,
    ProviderSpec,
    UnknownProvider,
    create_executor,
    provider_names,
    provider_spec,
)

NOWHERE = "http://127.0.0.1:1"


@pytest.fixture
def handler_source(tmp_path: Path) -> Path:
    source = tmp_path / "echo.py"
    source.write_text("def run(payload):\n    return payload\n")
    return source


def test_the_registered_providers_are_the_ones_that_exist() -> None:
    # The README lists these and no other: a cloud provider joins with its own module.
    assert provider_names() == ["aws", "azure", "custom", "digitalocean", "gcp"]


@pytest.mark.parametrize("name", provider_names())
def test_every_registered_provider_is_complete(name: str, handler_source: Path) -> None:
    spec = provider_spec(name)
    module = importlib.import_module(f"providers.{name}")

    assert module.PROVIDER is spec
    assert spec.name == name == spec.executor.provider_name
    assert issubclass(spec.executor, FaasExecutor)
    # Options: a strict, frozen model whose fields all have a description or a default.
    assert issubclass(spec.options, ProviderOptions)
    assert spec.options.model_config.get("extra") == "forbid"
    assert spec.options.model_config.get("frozen") is True
    # Limits: data, the executor's own, with a memory range and a request cap.
    assert isinstance(spec.limits, ProviderLimits)
    assert spec.limits is spec.executor.default_limits
    assert spec.limits.max_request_bytes is not None
    assert spec.limits.max_timeout_secs is not None
    # A price list under the declared key.
    assert spec.price_list in DEFAULT_PRICE_BOOK
    # A package builder that builds a zip holding the handler core and the sources.
    package = spec.build_package("echo:run", sources=[handler_source])
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        assert {f"{HANDLER_CORE_MODULE}.py", "echo.py"} <= set(archive.namelist())
    # Its SDK is installed in the dev install (``[all]``).
    spec.check_installed()


def test_the_custom_executor_is_built_from_its_options() -> None:
    executor = create_executor(
        "custom",
        {
            "base_url": NOWHERE,
            "function_prefix": "acme",
            "auth_header": {"name": "Authorization", "value": "Bearer s3cret"},
            "headers": {"X-Team": "ops"},
            "connect_timeout_s": 2,
        },
    )
    assert isinstance(executor, HttpFaasExecutor)
    assert executor.function_id(4) == "acme-4"
    assert repr(executor) == (
        f"HttpFaasExecutor(base_url='{NOWHERE}', function_prefix='acme', "
        "header_names=['Authorization', 'X-Team'], client_cert=None)"
    )


def test_options_may_be_given_as_the_model() -> None:
    options = CustomOptions(base_url=NOWHERE)
    executor = create_executor("custom", options)
    assert isinstance(executor, HttpFaasExecutor)
    assert executor.function_id(1) == "blueprint-job-1"


def test_a_secret_comes_from_the_named_variable_and_stays_out_of_reprs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MY_FAAS_KEY", "Bearer s3cret")
    options = CustomOptions.model_validate(
        {"base_url": NOWHERE, "auth_header": {"name": "Authorization", "value": "env:MY_FAAS_KEY"}}
    )
    assert options.auth_header is not None
    assert options.auth_header.value == SecretStr("Bearer s3cret")
    assert "s3cret" not in repr(options)
    assert "s3cret" not in repr(HttpFaasExecutor.from_options(options))


def test_an_unset_secret_variable_is_named_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MY_FAAS_KEY", raising=False)
    with pytest.raises(ValidationError) as caught:
        CustomOptions.model_validate(
            {"base_url": NOWHERE, "headers": {"Authorization": "env:MY_FAAS_KEY"}}
        )
    [problem] = caught.value.errors()
    assert problem["loc"] == ("headers", "Authorization")
    assert "environment variable MY_FAAS_KEY is not set" in problem["msg"]


def test_a_bad_option_is_named_and_never_quoted() -> None:
    with pytest.raises(ValidationError) as caught:
        create_executor("custom", {"base_url": "ftp://hunter2@x", "connect_timeout_s": -1})
    assert [problem["loc"] for problem in caught.value.errors()] == [
        ("base_url",),
        ("connect_timeout_s",),
    ]
    assert "hunter2" not in str(caught.value)


def test_an_unknown_option_is_refused() -> None:
    with pytest.raises(ValidationError, match="region"):
        create_executor("custom", {"base_url": NOWHERE, "region": "eu-west-1"})


@pytest.mark.parametrize("name", ["nimbus", "base", "errors", "Custom", "../custom", ""])
def test_a_name_that_is_not_a_provider_is_unknown(name: str) -> None:
    with pytest.raises(UnknownProvider, match=rf"\(known: {', '.join(provider_names())}\)"):
        provider_spec(name)


def test_a_missing_sdk_names_the_extra_that_installs_it() -> None:
    spec = ProviderSpec(
        executor=HttpFaasExecutor,
        options=CustomOptions,
        create=HttpFaasExecutor.from_options,
        build_package=provider_spec("custom").build_package,
        price_list="custom",
        requires=("blueprint_faas_no_such_sdk",),
    )
    with pytest.raises(MissingExtra) as caught:
        spec.check_installed()
    assert str(caught.value) == (
        "provider 'custom' needs blueprint_faas_no_such_sdk, which is not installed: "
        "pip install 'blueprint-faas[custom]'"
    )
    assert isinstance(caught.value, ImportError)

"""Provider limits as data: each rule, the base class checking them before any I/O, overrides."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError
from pydantic_core import to_json

from providers.base import FaasConfig
from providers.custom import LIMITS, HttpFaasExecutor
from providers.errors import InvalidConfig, PayloadTooLarge
from providers.limits import NO_LIMITS, ProviderLimits, json_request_size
from providers.reference_server import _models
from providers.reference_server._limits import DEFAULT_LIMITS as SERVER_LIMITS
from providers.registry import create_executor
from tests.memory_executor import MemoryExecutor

# Nothing listens on port 1: a request that was sent would fail as a transport error.
NOWHERE = "http://127.0.0.1:1"


def messages(limits: ProviderLimits, **config: object) -> list[tuple[str, str]]:
    return [(v.field, v.message) for v in limits.violations(FaasConfig(**config))]  # type: ignore[arg-type]


def test_the_custom_limits_are_the_reference_servers() -> None:
    assert LIMITS.min_memory_mb == _models.MIN_MEMORY_MB
    assert LIMITS.max_memory_mb == _models.MAX_MEMORY_MB
    assert LIMITS.memory_step_mb == _models.MEMORY_STEP_MB
    timeout = _models.FunctionConfig.model_fields["timeout_secs"].metadata
    assert any(getattr(rule, "le", None) == LIMITS.max_timeout_secs for rule in timeout)
    concurrency = _models.FunctionConfig.model_fields["max_concurrency"].metadata
    assert any(getattr(rule, "le", None) == LIMITS.max_concurrency for rule in concurrency)
    assert LIMITS.max_env_vars == _models._MAX_ENV_VARS
    assert LIMITS.max_env_value_chars == _models._MAX_ENV_VALUE_CHARS
    assert LIMITS.max_package_bytes == SERVER_LIMITS.max_upload_bytes
    assert LIMITS.max_request_bytes == SERVER_LIMITS.max_invoke_bytes
    assert LIMITS.max_response_bytes == SERVER_LIMITS.max_output_bytes


def test_a_config_within_the_limits_has_no_violation() -> None:
    assert messages(LIMITS, memory_mb=256, timeout_secs=900, max_concurrency=1000) == []
    assert messages(NO_LIMITS, memory_mb=32_768, timeout_secs=3600) == []


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"memory_mb": 64}, ("memory_mb", "memory_mb=64 is below the minimum of 128 MB")),
        ({"memory_mb": 10_304}, ("memory_mb", "memory_mb=10304 is above the maximum of 10240 MB")),
        ({"memory_mb": 200}, ("memory_mb", "memory_mb=200 is not a multiple of 64 MB")),
        ({"timeout_secs": 901}, ("timeout_secs", "timeout_secs=901 is above the maximum of 900 s")),
        (
            {"max_concurrency": 1001},
            ("max_concurrency", "max_concurrency=1001 is above the limit of 1000"),
        ),
        (
            {"env_vars": {f"V{n}": "" for n in range(257)}},
            ("env_vars", "257 environment variables are over the limit of 256"),
        ),
        (
            {"env_vars": {"TOKEN": "s" * 32_769}},
            (
                "env_vars",
                "the value of TOKEN (32769 characters) is over the limit of 32768 characters",
            ),
        ),
    ],
)
def test_each_custom_limit_names_the_field_the_value_and_the_limit(
    config: dict[str, object], expected: tuple[str, str]
) -> None:
    assert messages(LIMITS, **config) == [expected]


def test_sizes_on_offer_replace_the_range_and_a_sync_cut_caps_the_timeout() -> None:
    azure_like = ProviderLimits(
        memory_sizes_mb=(512, 2048, 4096), max_timeout_secs=1800, max_sync_timeout_secs=230
    )
    assert messages(azure_like, memory_mb=2048, timeout_secs=230) == []
    assert messages(azure_like, memory_mb=1024, timeout_secs=231) == [
        ("memory_mb", "memory_mb=1024 is not one of the sizes offered: [512, 2048, 4096]"),
        ("timeout_secs", "timeout_secs=231 is above the 230 s cut of a synchronous invocation"),
    ]


def test_the_environment_total_is_counted_in_bytes_and_never_quoted() -> None:
    lambda_like = ProviderLimits(max_env_total_bytes=8)
    found = messages(lambda_like, env_vars={"KEY": "hunter2"})
    assert found == [("env_vars", "the environment's 10 bytes are over the limit of 8 bytes")]
    assert "hunter2" not in repr(found)


def test_an_empty_memory_range_is_refused() -> None:
    with pytest.raises(ValidationError, match="max_memory_mb is below min_memory_mb"):
        ProviderLimits(min_memory_mb=256, max_memory_mb=128)
    with pytest.raises(ValidationError):
        ProviderLimits(max_request_bytes=0)


def test_deploy_refuses_a_config_over_the_limits_before_calling_the_provider() -> None:
    executor = MemoryExecutor(limits=ProviderLimits(max_memory_mb=1024, max_package_bytes=4))
    with pytest.raises(InvalidConfig) as caught:
        executor.deploy_job(3, b"PK-zip", FaasConfig(memory_mb=2048))
    assert caught.value.message == (
        "the package of 6 bytes is over the limit of 4 bytes; "
        "memory_mb=2048 is above the maximum of 1024 MB (memory limits)"
    )
    assert caught.value.provider == "memory"
    assert executor.deployed == []
    executor.deploy_job(3, b"PK", FaasConfig(memory_mb=1024))
    assert executor.deployed == [3]


def test_the_custom_executor_refuses_a_bad_config_without_a_request() -> None:
    with (
        HttpFaasExecutor(NOWHERE) as executor,
        pytest.raises(InvalidConfig, match=r"timeout_secs=901 is above the maximum of 900 s"),
    ):
        executor.deploy_job(1, b"PK", FaasConfig(timeout_secs=901))


@pytest.mark.parametrize("job_id", [0, 7, 2**32 - 1])
def test_the_request_size_is_that_of_the_json_request_sent(job_id: int) -> None:
    rng = random.Random(job_id)
    for size in (0, 1, 9, 10, 100, 1000):
        payload = bytes(rng.randrange(256) for _ in range(size))
        sent = to_json({"job_id": job_id, "args": list(payload)})
        assert json_request_size(job_id, payload) == len(sent)


def test_options_override_some_limits_and_keep_the_others() -> None:
    executor = create_executor("custom", {"base_url": NOWHERE, "limits": {"max_request_bytes": 64}})
    assert executor.limits == LIMITS.model_copy(update={"max_request_bytes": 64})
    # 30 zero bytes make a request of 81 bytes: refused before sending (a sent request would
    # fail to connect instead).
    with pytest.raises(PayloadTooLarge, match="makes a request of 81 bytes, over the custom"):
        executor.invoke(1, bytes(30))


def test_an_unknown_limit_in_the_options_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        create_executor("custom", {"base_url": NOWHERE, "limits": {"max_ram": 1}})
    [problem] = caught.value.errors()
    assert (problem["loc"], problem["type"]) == (("limits", "max_ram"), "extra_forbidden")

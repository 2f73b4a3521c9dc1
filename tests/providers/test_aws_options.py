"""The aws provider built from options, as a settings file declares it; secrets out of sight."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest
from pydantic import ValidationError

from dispatcher import load_app
from providers.aws import LIMITS, LambdaExecutor, LambdaOptions
from providers.base import FaasConfig
from providers.errors import AuthError
from providers.registry import create_executor

ROLE = "arn:aws:iam::123456789012:role/blueprint-lambda"
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def test_options_build_an_executor_without_any_network_io() -> None:
    executor = create_executor(
        "aws",
        {
            "region": "eu-west-1",
            "role_arn": ROLE,
            "function_prefix": "acme",
            "endpoint_url": "http://127.0.0.1:9",  # nothing listens: nothing is asked yet
            "architecture": "arm64",
        },
    )

    assert isinstance(executor, LambdaExecutor)
    assert executor.region == "eu-west-1"
    assert executor.architecture == "arm64"
    assert executor.function_id(4) == "acme-4"
    assert executor.limits == LIMITS


def test_a_settings_file_declares_lambda_jobs_with_keys_read_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAMBDA_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("LAMBDA_SECRET", SECRET)
    path = tmp_path / "app.toml"
    path.write_text(
        dedent(
            f"""
            [faas.jobs.1]
            provider = "aws"
            memory_mb = 1024
            timeout_secs = 120
            keep_warm = true
            provider_config = {{ provisioned_concurrency = 2 }}

            [faas.jobs.1.options]
            region = "eu-west-1"
            role_arn = "{ROLE}"
            access_key_id = "env:LAMBDA_KEY_ID"
            secret_access_key = "env:LAMBDA_SECRET"
            limits = {{ max_request_bytes = 1048576 }}
            """
        )
    )

    blueprint = load_app(str(path))
    executor = blueprint.registry.get(1)

    assert isinstance(executor, LambdaExecutor)
    assert executor.job_config(1) == FaasConfig(
        memory_mb=1024,
        timeout_secs=120,
        keep_warm=True,
        provider_config={"provisioned_concurrency": 2},
    )
    assert executor.limits.max_request_bytes == 1_048_576
    assert executor.limits.max_timeout_secs == 900
    assert repr(executor) == (
        "LambdaExecutor(region='eu-west-1', function_prefix='blueprint-job', "
        "runtime='python3.12', architecture='x86_64', endpoint_url=None, credentials='keys')"
    )
    assert SECRET not in repr(blueprint)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"role_arn": ROLE}, "region"),
        ({"region": "Europe", "role_arn": ROLE}, "region"),
        ({"region": "eu-west-1", "role_arn": "blueprint-lambda"}, "role_arn"),
        ({"region": "eu-west-1", "role_arn": ROLE, "runtime": "nodejs20.x"}, "runtime"),
        ({"region": "eu-west-1", "role_arn": ROLE, "function_prefix": "a" * 54}, "function_prefix"),
        ({"region": "eu-west-1", "role_arn": ROLE, "architecture": "riscv"}, "architecture"),
        ({"region": "eu-west-1", "role_arn": ROLE, "secret_access_key": SECRET}, "access_key_id"),
        ({"region": "eu-west-1", "role_arn": ROLE, "base_url": "http://x"}, "base_url"),
    ],
)
def test_bad_options_are_refused_naming_the_field_never_the_secret(
    options: dict[str, str], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        LambdaOptions.model_validate(options)

    assert field in str(caught.value)
    assert SECRET not in str(caught.value)


def test_without_any_credentials_a_call_is_an_auth_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # boto3's standard chain, with nothing to find: no variables, files or instance role.
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    executor = LambdaExecutor("eu-west-1", ROLE, endpoint_url="http://127.0.0.1:9")

    with pytest.raises(AuthError) as caught:
        executor.health_check(1)

    assert "NoCredentialsError" in caught.value.message
    assert caught.value.retryable is False


def test_the_keys_never_show_in_a_repr() -> None:
    executor = LambdaExecutor(
        "eu-west-1",
        ROLE,
        access_key_id="AKIDEXAMPLE",
        secret_access_key=SECRET,
        session_token="token-" + SECRET,
    )

    assert SECRET not in repr(executor)
    assert "credentials='keys'" in repr(executor)

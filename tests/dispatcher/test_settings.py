"""Settings: sources, unknown keys, URL constructors, redaction, derived Celery config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from dispatcher import ConfigError, Settings, redact_url


def test_defaults_describe_the_embedded_mode() -> None:
    settings = Settings.from_env({})
    assert settings.is_embedded
    assert settings.resolved_broker_url == "filesystem://"
    assert settings.resolved_result_backend.startswith("file://")


def test_environment_variables_set_knobs_and_win_over_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "blueprint.toml"
    config.write_text('retry_max = 2\nmax_in_flight = 7\nbroker_url = "redis://h:6379/3"\n')
    settings = Settings.from_env(
        {"BLUEPRINT_FAAS_CONFIG": str(config), "BLUEPRINT_FAAS_RETRY_MAX": "4"}
    )
    assert settings.retry_max == 4 and settings.max_in_flight == 7
    assert settings.resolved_result_backend == "redis://h:6379/3"


def test_a_json_config_file_is_read_too(tmp_path: Path) -> None:
    config = tmp_path / "blueprint.json"
    config.write_text(json.dumps({"retry_base_s": 0.25}))
    assert Settings.from_env({"BLUEPRINT_FAAS_CONFIG": str(config)}).retry_base_s == 0.25


@pytest.mark.parametrize(
    ("environ", "file_text"),
    [({"BLUEPRINT_FAAS_RETRY_MAXIMUM": "3"}, None), ({}, "retry_maximum = 3\n")],
)
def test_unknown_keys_are_refused_in_the_environment_and_the_file(
    tmp_path: Path, environ: dict[str, str], file_text: str | None
) -> None:
    if file_text is not None:
        config = tmp_path / "c.toml"
        config.write_text(file_text)
        environ = {**environ, "BLUEPRINT_FAAS_CONFIG": str(config)}
    with pytest.raises(ConfigError, match="retry_maximum"):
        Settings.from_env(environ)


def test_the_reference_servers_own_variables_are_not_settings() -> None:
    Settings.from_env({"BLUEPRINT_FAAS_SERVER_API_KEY": "k"})


def test_bad_values_and_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env({"BLUEPRINT_FAAS_RETRY_MAX": "lots"})
    with pytest.raises(ConfigError):
        Settings.from_env({"BLUEPRINT_FAAS_CONFIG": str(tmp_path / "missing.toml")})
    broken = tmp_path / "broken.toml"
    broken.write_text("retry_max = ")
    with pytest.raises(ConfigError):
        Settings.from_env({"BLUEPRINT_FAAS_CONFIG": str(broken)})


def test_passwords_never_show_in_the_repr() -> None:
    settings = Settings.for_redis("cache", 6380, 2, password="s3cr:et/")
    assert "s3cr" not in repr(settings) and "***" in repr(settings)
    assert settings.broker_url == "redis://:s3cr%3Aet%2F@cache:6380/2"
    assert redact_url("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"


def test_errors_never_show_a_broker_password() -> None:
    url = "redis://:s3cret@h/0"
    with pytest.raises(ValidationError, match="visibility_timeout_s") as built:
        Settings(visibility_timeout_s=9, broker_url=url)
    # pydantic shortens a long input to its two ends: the URL goes last to be seen.
    with pytest.raises(ConfigError, match="visibility_timeout_s") as read:
        Settings.from_env(
            {"BLUEPRINT_FAAS_VISIBILITY_TIMEOUT_S": "9", "BLUEPRINT_FAAS_BROKER_URL": url}
        )
    assert "s3cret" not in str(built.value)
    assert "s3cret" not in str(read.value)


def test_from_redis_url_refuses_other_schemes() -> None:
    with pytest.raises(ConfigError):
        Settings.from_redis_url("amqp://guest:guest@h//")


def test_a_visibility_timeout_below_the_time_limit_plus_retry_delay_is_refused() -> None:
    with pytest.raises(ValidationError, match="visibility_timeout_s"):
        Settings(visibility_timeout_s=100, local_time_limit_s=90, retry_cap_s=30)
    settings = Settings(visibility_timeout_s=20, local_time_limit_s=3, retry_cap_s=1)
    with pytest.raises(ValueError, match="visibility_timeout_s"):
        settings.check_visibility_timeout(settings.time_limits_s([300])[1])


def test_time_limits_sit_above_the_slowest_functions_timeout() -> None:
    settings = Settings(local_time_limit_s=10, time_limit_margin_s=4)
    assert settings.time_limits_s() == (10, 12)
    assert settings.time_limits_s([60, 30]) == (62, 64)


def test_to_env_rebuilds_equal_settings() -> None:
    settings = Settings.from_redis_url("redis://:pw@h:1/2", retry_max=1, send_events=True)
    assert Settings.from_env(settings.to_env()) == settings


def test_redis_transport_options_make_redelivery_follow_the_visibility_timeout() -> None:
    config = Settings.from_redis_url(
        "redis://h/0",
        visibility_timeout_s=9,
        local_time_limit_s=3,
        time_limit_margin_s=2,
        retry_cap_s=1,
    ).celery_connection_config()
    options = config["broker_transport_options"]
    assert options["visibility_timeout"] == 9
    assert options["unacked_restore_interval"] == 3 and options["unacked_restore_throttle"] == 1

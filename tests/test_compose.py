"""docker-compose.yml and the Dockerfile describe the production shape, checked without Docker.

The file is interpolated the way Compose does it, validated against the Compose specification
schema (vendored in tests/data, see its README), then held to what the deployment needs:
persistence, health checks, wiring, and no credential written in the file. Where a
``docker compose`` command works, its own ``config`` check runs too.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SCHEMA_FILE = Path(__file__).parent / "data" / "compose_spec.json"

#: What a user must set; a dummy value for validation only.
TEST_ENV = {"FLOWER_BASIC_AUTH": "tester:not-a-real-password"}
APP_SERVICES = {"worker-local", "worker-faas", "beat", "flower", "reference-server", "demo"}
BROKER_ENV = {
    "BLUEPRINT_FAAS_BROKER_URL": "redis://redis:6379/0",
    "BLUEPRINT_FAAS_RESULT_BACKEND": "redis://redis:6379/1",
}

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})"
)


class _MissingVariable(Exception):
    """A ``${NAME:?message}`` whose variable is not set."""


def _interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Substitute ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}`` as Compose does."""
    if isinstance(value, dict):
        return {key: _interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"]
        current = env.get(name)
        unset = current is None or (op is not None and op.startswith(":") and not current)
        if op is not None and op.endswith("?") and unset:
            raise _MissingVariable(f"{name}: {arg}")
        if op is not None and op.endswith("-") and unset:
            return arg
        return current or ""

    return _VARIABLE.sub(substitute, value)


def _raw() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    interpolated = _interpolate(_raw(), TEST_ENV)
    assert isinstance(interpolated, dict)
    return interpolated


def _services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose["services"]
    assert isinstance(services, dict)
    return services


def _argv(service: Mapping[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def _option(argv: list[str], flag: str) -> str:
    assert flag in argv, f"{flag} missing from {argv}"
    return argv[argv.index(flag) + 1]


def test_the_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    # The schema names draft 2019-09 by a URL jsonschema does not recognise.
    jsonschema.Draft201909Validator.check_schema(schema)
    validator = jsonschema.Draft201909Validator(schema)
    broken = {**compose, "services": {"redis": {"image": "redis", "helthcheck": {}}}}

    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]

    assert errors == []
    assert not validator.is_valid(broken)
    assert set(_services(compose)) == APP_SERVICES | {"redis"}


def test_docker_compose_accepts_the_file_where_it_can_run() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip("the docker client here has no compose plugin")
    checked = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", **TEST_ENV},
    )
    assert checked.returncode == 0, checked.stderr


def test_flower_credentials_must_come_from_the_environment() -> None:
    raw_flower = _raw()["services"]["flower"]

    assert "--basic-auth" not in raw_flower["command"]  # arguments are visible to `ps`
    assert re.fullmatch(
        r"\$\{FLOWER_BASIC_AUTH:\?[^}]*\}", raw_flower["environment"]["FLOWER_BASIC_AUTH"]
    )
    with pytest.raises(_MissingVariable, match="FLOWER_BASIC_AUTH"):
        _interpolate(_raw(), {})


def test_no_credential_is_written_in_the_file() -> None:
    text = COMPOSE_FILE.read_text()

    assert TEST_ENV["FLOWER_BASIC_AUTH"] not in text
    # A URL with a password, or a secret-looking key with a literal value.
    assert not re.search(r"://[^/\s:@]+:[^@\s]+@", text)
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if re.search(r"(?i)password|secret|token|api_key", key) and value.strip():
            assert value.strip().startswith("${"), f"credential written inline: {line!r}"


def test_every_python_service_is_built_from_the_one_dockerfile(compose: dict[str, Any]) -> None:
    services = _services(compose)

    for name in APP_SERVICES:
        build = services[name]["build"]
        assert (build["context"], build["dockerfile"]) == (".", "Dockerfile"), name
    assert "build" not in services["redis"]
    assert services["redis"]["image"].startswith("redis:")
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    assert 'pip install ".[all]"' in dockerfile


def test_every_python_service_reaches_redis_as_broker_and_result_backend(
    compose: dict[str, Any],
) -> None:
    services = _services(compose)

    for name in APP_SERVICES:
        environment = services[name]["environment"]
        assert {k: environment.get(k) for k in BROKER_ENV} == BROKER_ENV, name


def test_redis_persists_like_a_broker_and_reports_its_health(compose: dict[str, Any]) -> None:
    redis = _services(compose)["redis"]
    argv = _argv(redis)

    assert _option(argv, "--appendonly") == "yes"
    assert _option(argv, "--appendfsync") == "everysec"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_dependencies_wait_for_health_where_there_is_a_health_check(
    compose: dict[str, Any],
) -> None:
    services = _services(compose)

    for name in APP_SERVICES - {"reference-server"}:
        depends_on = services[name]["depends_on"]
        assert depends_on["redis"] == {"condition": "service_healthy"}, name
        for target, rule in depends_on.items():
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits on {target}"
    assert services["worker-faas"]["depends_on"]["reference-server"] == {
        "condition": "service_healthy"
    }


def test_the_workers_run_the_pools_their_jobs_need(compose: dict[str, Any]) -> None:
    services = _services(compose)
    local = _argv(services["worker-local"])
    faas = _argv(services["worker-faas"])

    assert (_option(local, "--jobs"), _option(local, "--pool")) == ("0", "prefork")
    assert _option(local, "--concurrency") == "2"
    assert (_option(faas, "--jobs"), _option(faas, "--pool")) == ("1", "threads")
    assert _option(faas, "--concurrency") == "64"
    for worker in (local, faas):
        assert _option(worker, "--app") == "dispatcher.demo"
    for name in ("worker-local", "worker-faas"):
        assert services[name]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
        assert any(port.endswith(":9808") for port in services[name]["ports"])
    assert "PROMETHEUS_MULTIPROC_DIR" not in services["flower"]["environment"]


def test_the_app_module_can_be_chosen_from_the_environment() -> None:
    changed = _interpolate(_raw(), {**TEST_ENV, "BLUEPRINT_FAAS_APP": "myapp.blueprint"})

    for name in ("worker-local", "worker-faas", "beat", "flower"):
        assert _option(_argv(changed["services"][name]), "--app") == "myapp.blueprint"


def test_the_reference_server_keeps_its_data_and_checks_its_http_port(
    compose: dict[str, Any],
) -> None:
    server = _services(compose)["reference-server"]
    argv = _argv(server)
    check = server["healthcheck"]["test"]

    assert (_option(argv, "--host"), _option(argv, "--port")) == ("0.0.0.0", "8080")
    assert _option(argv, "--data-dir") == "/data"
    assert any(volume.endswith(":/data") for volume in server["volumes"])
    assert check[0] == "CMD"
    assert any("http://127.0.0.1:8080/" in part for part in check)


def test_commands_name_real_cli_subcommands_and_options(compose: dict[str, Any]) -> None:
    used: dict[str, set[str]] = {}
    for name in APP_SERVICES:
        argv = _argv(_services(compose)[name])
        assert argv[0] == "blueprint-faas", name
        used.setdefault(argv[1], set()).update(arg for arg in argv if arg.startswith("--"))
    assert set(used) == {"worker", "beat", "flower", "reference-server", "demo"}

    for subcommand, options in sorted(used.items()):
        helped = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from dispatcher.cli import main; sys.exit(main())",
                subcommand,
                "--help",
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
            timeout=60,
        )
        assert helped.returncode == 0, f"blueprint-faas {subcommand} --help: {helped.stderr}"
        for option in options:
            assert option in helped.stdout, f"blueprint-faas {subcommand} has no {option}"

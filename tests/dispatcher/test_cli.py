"""The process commands' arguments and errors: typer refuses bad arguments (exit 2), and every
expected failure is one red line (exit 1), never a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dispatcher._cli_operations import MAX_JOB_ID
from dispatcher.cli import cli
from providers.base import MAX_JOB_ID as PROVIDERS_MAX_JOB_ID

runner = CliRunner()


def test_the_cli_bounds_job_ids_as_the_providers_do() -> None:
    assert MAX_JOB_ID == PROVIDERS_MAX_JOB_ID


@pytest.mark.parametrize("jobs", ["0,x", ",", "-1", f"0,{2**32}"])
def test_worker_refuses_jobs_that_are_not_job_ids(jobs: str) -> None:
    result = runner.invoke(cli, ["worker", "--app", "tests.workers.apps", "--jobs", jobs])

    assert result.exit_code == 2
    said = _words(result.output)
    assert "--jobs" in said and "separated by commas" in said
    assert "Traceback" not in said


def test_worker_offers_only_the_pools_there_are() -> None:
    result = runner.invoke(cli, ["worker", "--app", "tests.workers.apps", "--pool", "forky"])

    assert result.exit_code == 2
    assert "prefork" in _words(result.output) and "gevent" in _words(result.output)


def test_submit_refuses_a_job_id_out_of_range() -> None:
    result = runner.invoke(cli, ["submit", "--app", "x", str(2**32), "--args-hex", "00"])

    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_submit_refuses_args_that_are_not_hex() -> None:
    result = runner.invoke(cli, ["submit", "--app", "x", "0", "--args-hex", "zz"])

    assert result.exit_code == 2
    assert "cannot read the job args" in _words(result.output)


def test_an_app_that_cannot_be_loaded_is_one_red_line_for_every_command() -> None:
    for command in (["worker"], ["run"], ["beat"], ["submit", "0", "--args-hex", "00"]):
        result = runner.invoke(cli, [command[0], "--app", "no_such_module_here", *command[1:]])

        assert result.exit_code == 1, (command, result.output)
        said = _words(result.output)
        assert "error:" in said and "no_such_module_here" in said
        assert "Traceback" not in result.output


def test_the_top_level_help_speaks_to_users() -> None:
    result = runner.invoke(cli, ["--help"])

    assert result.exit_code == 0
    assert "blueprint-faas demo" in result.output
    assert "blueprint-faas worker --app" in result.output
    assert "monkey-patch" not in result.output


def _words(output: str) -> str:
    """The output with rich's box and line wrapping undone."""
    return " ".join(output.replace("│", " ").split())

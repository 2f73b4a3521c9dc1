"""The Custom FaaS contract's runtime: an executable ``bootstrap`` in the package's root.

The platform runs ``bootstrap`` once per invocation with the request JSON on stdin and reads
the reply JSON from its stdout (``docs/design-notes.md``, "The reference server").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from providers.errors import InvalidConfig
from providers.packaging._core import HANDLER_CORE_MODULE, python_package
from providers.packaging._zip import EXECUTABLE_MODE, Entry, write_zip

__all__ = [
    "BOOTSTRAP_NAME",
    "DEFAULT_PYTHON",
    "DEFAULT_SHELL",
    "build_custom_package",
    "build_shell_package",
]

BOOTSTRAP_NAME = "bootstrap"
DEFAULT_PYTHON = "/usr/bin/env python3"
DEFAULT_SHELL = "/bin/sh"

# Request on stdin, reply on stdout, exit status 0 even when the handler fails (the reply
# says so; a non-zero exit reads as a crash to the platform). Stdout is closed right after
# the reply, so a platform can answer before the interpreter has shut down.
_BOOTSTRAP_TEMPLATE = '''\
#!{python}
"""Custom FaaS contract adapter: runs HANDLER on the request read from stdin."""
import os
import sys

import {core}

HANDLER = {handler!r}


def main():
    reply_stream = sys.stdout
    # Whatever the handler prints goes to stderr, so it cannot corrupt the reply.
    sys.stdout = sys.stderr
    # Load before reading stdin: a pre-started (warm) instance pays the import in advance.
    handler, load_error = {core}.try_load_handler(HANDLER)
    reply = {core}.answer(handler, load_error, sys.stdin.buffer.read())
    reply_stream.write(reply)
    reply_stream.flush()
    # End stdout now: the platform answers at its EOF instead of after this interpreter's
    # shutdown (several ms). /dev/null takes the descriptor's place, so nothing written
    # later (or a final flush) can fail or land in a file that reused the number.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, reply_stream.fileno())
    os.close(devnull)


if __name__ == "__main__":
    main()
'''


def build_custom_package(
    handler: str,
    *,
    sources: Sequence[str | Path],
    python: str = DEFAULT_PYTHON,
) -> bytes:
    """Build a Custom FaaS contract zip that runs the Python ``handler``.

    The zip holds an executable ``bootstrap`` that reads the request JSON from stdin, calls
    the handler with the request's bytes and writes ``{"job_id", "result", "success": true}``
    (or ``{"success": false, "error"}``) to stdout, plus the handler core and ``sources``.

    Parameters
    ----------
    handler:
        ``module:function``, e.g. ``"jobs.square:run"``; the function takes and returns bytes.
    sources:
        Files and folders to ship. A file lands at the zip root under its name; a folder lands
        at the root as itself (a package), so pass a folder's children to ship its contents.
        ``__pycache__`` and compiled files are left out.
    python:
        The interpreter line of ``bootstrap`` (without ``#!``).

    Returns
    -------
    bytes
        The zip, ready for :meth:`providers.custom.HttpFaasExecutor.deploy_job`.

    Raises
    ------
    InvalidConfig
        ``handler`` is not ``module:function``, ``python`` is not one line, a source is
        missing or clashes with another entry, or the handler's top-level module is not
        among ``sources``.
    """
    if "\n" in python or not python.strip():
        raise InvalidConfig(f"python must be one interpreter line, got {python!r}")
    bootstrap = _BOOTSTRAP_TEMPLATE.format(python=python, handler=handler, core=HANDLER_CORE_MODULE)
    adapter = {BOOTSTRAP_NAME: Entry(bootstrap.encode("utf-8"), EXECUTABLE_MODE)}
    return python_package(handler, sources, adapter)


def build_shell_package(script: str) -> bytes:
    """Build a Custom FaaS contract zip whose ``bootstrap`` is the shell ``script``.

    For tests and benchmarks that need a function without Python. ``script`` reads the
    request JSON on stdin and prints the reply JSON; without its own ``#!`` line it runs
    under ``/bin/sh``.
    """
    text = script if script.startswith("#!") else f"#!{DEFAULT_SHELL}\n{script}"
    return write_zip({BOOTSTRAP_NAME: Entry(text.encode("utf-8"), EXECUTABLE_MODE)})

"""Deployment packages built from a Python handler ``module:function`` (bytes in, bytes out).

Every provider runs code under its own contract (DESIGN.md decision 8), so a package is one
generic *handler core* plus a thin *adapter* for the runtime. The core, written into each
package as ``_blueprint_handler.py``, imports the handler and calls it with bytes; the adapter
turns the runtime's request into that call and the bytes back into the runtime's reply.

Today's adapter is the Custom FaaS contract's executable ``bootstrap``
(:func:`build_custom_package`). An adapter for Lambda, GCP, Azure or DigitalOcean is one more
``build_*_package`` function: its entry-point source, handed to :func:`_python_package`.

Packages are reproducible: entries are sorted and stamped with one fixed date, so the same
inputs give the same bytes (and the same hash) on every machine.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from providers.errors import InvalidConfig

__all__ = [
    "BOOTSTRAP_NAME",
    "DEFAULT_PYTHON",
    "HANDLER_CORE_MODULE",
    "build_custom_package",
    "build_shell_package",
    "load_prebuilt",
]

BOOTSTRAP_NAME = "bootstrap"
HANDLER_CORE_MODULE = "_blueprint_handler"
DEFAULT_PYTHON = "/usr/bin/env python3"
DEFAULT_SHELL = "/bin/sh"

_EXECUTABLE_MODE = 0o100755
_FILE_MODE = 0o100644
# Zip's earliest representable date; a fixed stamp keeps builds byte-for-byte reproducible.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_UNIX_SYSTEM = 3
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_HANDLER_SPEC = re.compile(
    rf"({_IDENTIFIER}(?:\.{_IDENTIFIER})*):({_IDENTIFIER}(?:\.{_IDENTIFIER})*)"
)
_SKIPPED_DIRS = frozenset({"__pycache__"})
_SKIPPED_SUFFIXES = frozenset({".pyc", ".pyo"})

# The handler core runs inside the package, on the platform's python3: standard library only,
# and only importlib, so a cold start pays for nothing it does not use.
_HANDLER_CORE_SOURCE = '''\
"""Blueprint handler core: load a ``module:function`` handler and call it with bytes.

Written into every Python package by blueprint-faas; the runtime adapter imports it.
"""
import importlib


def load_handler(spec):
    """Import ``module:function``; the function part may be a dotted attribute path."""
    module_name, _, attribute = spec.partition(":")
    target = importlib.import_module(module_name)
    for name in attribute.split("."):
        target = getattr(target, name)
    if not callable(target):
        raise TypeError("handler %s is not callable" % spec)
    return target


def call_handler(handler, payload):
    """Call ``handler`` with ``payload`` (bytes) and return its result, which must be bytes."""
    result = handler(payload)
    if not isinstance(result, (bytes, bytearray, memoryview)):
        raise TypeError("handler must return bytes, got %s" % type(result).__name__)
    return bytes(result)
'''

# The Custom FaaS adapter: request JSON on stdin, reply JSON on stdout, exit status 0 even when
# the handler fails (the reply says so; a non-zero exit reads as a crash to the platform).
# Stdout is closed right after the reply, so a platform can answer before the interpreter
# has shut down.
_CUSTOM_BOOTSTRAP_TEMPLATE = '''\
#!{python}
"""Custom FaaS contract adapter: runs HANDLER on the request read from stdin."""
import json
import os
import sys

import {core}

HANDLER = {handler!r}
# Joining precomputed digit strings is ~2.5x faster than json.dumps(list(result)).
_BYTE_TEXT = [str(value) for value in range(256)]


def _failure(job_id, error):
    import traceback

    traceback.print_exc()
    message = "%s: %s" % (type(error).__name__, error)
    return json.dumps({{"job_id": job_id, "result": [], "success": False, "error": message}})


def main():
    reply_stream = sys.stdout
    # Whatever the handler prints goes to stderr, so it cannot corrupt the reply.
    sys.stdout = sys.stderr
    # Load before reading stdin: a pre-started (warm) instance pays the import in advance.
    try:
        handler, load_error = {core}.load_handler(HANDLER), None
    except Exception as error:
        handler, load_error = None, error
    job_id = None
    try:
        request = json.loads(sys.stdin.buffer.read())
        job_id = request.get("job_id")
        if load_error is not None:
            raise load_error
        args = request.get("args", [])
        payload = args.encode("utf-8") if isinstance(args, str) else bytes(args)
        result = {core}.call_handler(handler, payload)
        reply = '{{"job_id":%s,"result":[%s],"success":true}}' % (
            json.dumps(job_id),
            ",".join(map(_BYTE_TEXT.__getitem__, result)),
        )
    except Exception as error:
        reply = _failure(job_id, error)
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


@dataclass(frozen=True, slots=True)
class _Entry:
    data: bytes
    mode: int = _FILE_MODE


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
    bootstrap = _CUSTOM_BOOTSTRAP_TEMPLATE.format(
        python=python, handler=handler, core=HANDLER_CORE_MODULE
    )
    adapter = {BOOTSTRAP_NAME: _Entry(bootstrap.encode("utf-8"), _EXECUTABLE_MODE)}
    return _python_package(handler, sources, adapter)


def build_shell_package(script: str) -> bytes:
    """Build a Custom FaaS contract zip whose ``bootstrap`` is the shell ``script``.

    For tests and benchmarks that need a function without Python. ``script`` reads the
    request JSON on stdin and prints the reply JSON; without its own ``#!`` line it runs
    under ``/bin/sh``.
    """
    text = script if script.startswith("#!") else f"#!{DEFAULT_SHELL}\n{script}"
    return _zip({BOOTSTRAP_NAME: _Entry(text.encode("utf-8"), _EXECUTABLE_MODE)})


def load_prebuilt(path: str | Path) -> bytes:
    """Read a zip built elsewhere and return it as is, after checking it is a sound zip.

    Raises
    ------
    InvalidConfig
        The file cannot be read, is empty, is not a zip, fails its CRC check, or has an
        entry that would land outside the extraction folder (absolute or ``..``).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise InvalidConfig(f"cannot read package {path}: {error.strerror}") from error
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            broken = archive.testzip()
            names = archive.namelist()
    except (zipfile.BadZipFile, EOFError) as error:
        raise InvalidConfig(f"package {path} is not a zip: {error}") from error
    if not names:
        raise InvalidConfig(f"package {path} is empty")
    if broken is not None:
        raise InvalidConfig(f"package {path} has a corrupt entry {broken!r}")
    for name in names:
        _check_entry_name(name, path)
    return data


def _python_package(
    handler: str, sources: Sequence[str | Path], adapter: Mapping[str, _Entry]
) -> bytes:
    """The package every Python runtime shares: handler core + sources + the adapter."""
    match = _HANDLER_SPEC.fullmatch(handler)
    if match is None:
        raise InvalidConfig(f"handler must be 'module:function', got {handler!r}")
    entries = {f"{HANDLER_CORE_MODULE}.py": _Entry(_HANDLER_CORE_SOURCE.encode("utf-8"))}
    entries.update(adapter)
    for name, entry in _source_entries(sources):
        if name in entries:
            raise InvalidConfig(f"source entry {name!r} clashes with another package entry")
        entries[name] = entry
    top_module = match.group(1).split(".")[0]
    if f"{top_module}.py" not in entries and not any(
        name.startswith(f"{top_module}/") for name in entries
    ):
        raise InvalidConfig(
            f"the handler's module {top_module!r} is not among the sources "
            f"(expected {top_module}.py or a {top_module}/ folder)"
        )
    return _zip(entries)


def _source_entries(sources: Sequence[str | Path]) -> Iterator[tuple[str, _Entry]]:
    for source in map(Path, sources):
        if source.is_file():
            yield source.name, _Entry(source.read_bytes())
        elif source.is_dir():
            for file in sorted(source.rglob("*")):
                relative = file.relative_to(source.parent)
                if file.is_file() and not _skipped(relative):
                    yield relative.as_posix(), _Entry(file.read_bytes())
        else:
            raise InvalidConfig(f"source {source} does not exist")


def _skipped(relative: Path) -> bool:
    return relative.suffix in _SKIPPED_SUFFIXES or any(
        part in _SKIPPED_DIRS for part in relative.parts
    )


def _zip(entries: Mapping[str, _Entry]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.create_system = _UNIX_SYSTEM
            info.external_attr = entries[name].mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name].data)
    return buffer.getvalue()


def _check_entry_name(name: str, path: str | Path) -> None:
    entry = PurePosixPath(name)
    if "\\" in name or entry.is_absolute() or ".." in entry.parts:
        raise InvalidConfig(f"package {path} has an unsafe entry {name!r}")

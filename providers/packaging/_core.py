"""The handler core every Python package carries, and the package that holds it.

The core, written into each package as ``_blueprint_handler.py``, loads the handler
``module:function`` and turns the request every generated entry point reads,
``{"job_id", "args": [bytes as integers]}``, into a call with bytes, and the bytes back into
the reply ``{"job_id", "result": [...], "success": true}`` (or ``success: false`` with an
``error``). A runtime adapter only moves that request and reply in and out of its runtime.

Every reply also says whether the process answering was fresh (its first request: a cold
start, on platforms that keep processes) and how long the handler ran (``handler_ms``), since
most platforms report neither. The warm-up request :data:`WARMUP_REQUEST` is answered
without running the handler (``"warmup": true``), so a keep-warm ping costs no job run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from providers.errors import InvalidConfig
from providers.packaging._zip import Entry, write_zip

__all__ = ["HANDLER_CORE_MODULE", "WARMUP_REQUEST", "python_package"]

HANDLER_CORE_MODULE = "_blueprint_handler"
#: The request an executor's ``warm`` sends: the core answers it without running the job.
WARMUP_REQUEST: dict[str, object] = {"warmup": True}

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_HANDLER_SPEC = re.compile(
    rf"({_IDENTIFIER}(?:\.{_IDENTIFIER})*):({_IDENTIFIER}(?:\.{_IDENTIFIER})*)"
)
_SKIPPED_DIRS = frozenset({"__pycache__"})
_SKIPPED_SUFFIXES = frozenset({".pyc", ".pyo"})

# The handler core runs inside the package, on the platform's python3: standard library only,
# and little of it, so a cold start pays for nothing it does not use.
_HANDLER_CORE_SOURCE = '''\
"""Blueprint handler core: load a ``module:function`` handler and answer requests with it.

Written into every Python package by blueprint-faas; the runtime adapter imports it.
"""
import importlib
import json
import time

# Joining precomputed digit strings is ~2.5x faster than json.dumps(list(result)).
_BYTE_TEXT = [str(value) for value in range(256)]
# True until this process has answered its first request (a cold start).
_fresh = True


def load_handler(spec):
    """Import ``module:function``; the function part may be a dotted attribute path."""
    module_name, _, attribute = spec.partition(":")
    target = importlib.import_module(module_name)
    for name in attribute.split("."):
        target = getattr(target, name)
    if not callable(target):
        raise TypeError("handler %s is not callable" % spec)
    return target


def try_load_handler(spec):
    """``(handler, None)``, or ``(None, error)`` to be raised at the first request."""
    try:
        return load_handler(spec), None
    except Exception as error:
        return None, error


def call_handler(handler, payload):
    """Call ``handler`` with ``payload`` (bytes) and return its result, which must be bytes."""
    result = handler(payload)
    if not isinstance(result, (bytes, bytearray, memoryview)):
        raise TypeError("handler must return bytes, got %s" % type(result).__name__)
    return bytes(result)


def payload_of(request):
    """The request's args as bytes: an array of 0..255, or a string (its UTF-8 bytes)."""
    args = request.get("args", [])
    return args.encode("utf-8") if isinstance(args, str) else bytes(args)


def reply_json(job_id, result, fresh, handler_ms):
    """The success reply for ``result`` (bytes), as JSON text."""
    return '{"job_id":%s,"result":[%s],"success":true,"fresh":%s,"handler_ms":%.3f}' % (
        json.dumps(job_id),
        ",".join(map(_BYTE_TEXT.__getitem__, result)),
        "true" if fresh else "false",
        handler_ms,
    )


def failure_json(job_id, error, fresh):
    """The failure reply for ``error``, as JSON text; the traceback goes to stderr."""
    import traceback

    traceback.print_exc()
    message = "%s: %s" % (type(error).__name__, error)
    reply = {"job_id": job_id, "result": [], "success": False, "error": message, "fresh": fresh}
    return json.dumps(reply)


def _was_fresh():
    """Whether this is the process's first request; every later call says False."""
    global _fresh
    fresh, _fresh = _fresh, False
    return fresh


def _reply_and_outcome(handler, load_error, request, fresh):
    """``(reply, ok)`` for one decoded request; ``ok`` is False when the reply is a failure."""
    job_id = None
    try:
        if not isinstance(request, dict):
            raise TypeError("a request must be a JSON object")
        job_id = request.get("job_id")
        if request.get("warmup") is True:
            warm = '{"job_id":null,"result":[],"success":true,"warmup":true,"fresh":%s}' % (
                "true" if fresh else "false"
            )
            return warm, True
        if load_error is not None:
            raise load_error
        payload = payload_of(request)
        started = time.perf_counter()
        result = call_handler(handler, payload)
        handler_ms = (time.perf_counter() - started) * 1000
        return reply_json(job_id, result, fresh, handler_ms), True
    except Exception as error:
        return failure_json(job_id, error, fresh), False


def answer_request(handler, load_error, request, fresh=None):
    """The reply (JSON text) to one decoded request, whatever goes wrong."""
    fresh = _was_fresh() if fresh is None else fresh
    return _reply_and_outcome(handler, load_error, request, fresh)[0]


def answer_with_outcome(handler, load_error, raw_request):
    """``(reply, ok)``: the reply to one raw request (JSON bytes), and whether it succeeded.

    For adapters whose runtime reads a status as well as a body (an HTTP entry point answers
    a failed job with an error status, without decoding its own reply to find out).
    """
    fresh = _was_fresh()
    try:
        request = json.loads(raw_request)
    except Exception as error:
        return failure_json(None, error, fresh), False
    return _reply_and_outcome(handler, load_error, request, fresh)


def answer(handler, load_error, raw_request):
    """The reply (JSON text) to one raw request (JSON bytes), whatever goes wrong."""
    return answer_with_outcome(handler, load_error, raw_request)[0]
'''


def python_package(
    handler: str, sources: Sequence[str | Path], adapter: Mapping[str, Entry]
) -> bytes:
    """The package every Python runtime shares: handler core + ``sources`` + the adapter.

    Raises
    ------
    InvalidConfig
        ``handler`` is not ``module:function``, a source is missing or clashes with another
        entry, or the handler's top-level module is not among ``sources``.
    """
    match = _HANDLER_SPEC.fullmatch(handler)
    if match is None:
        raise InvalidConfig(f"handler must be 'module:function', got {handler!r}")
    entries = {f"{HANDLER_CORE_MODULE}.py": Entry(_HANDLER_CORE_SOURCE.encode("utf-8"))}
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
    return write_zip(entries)


def _source_entries(sources: Sequence[str | Path]) -> Iterator[tuple[str, Entry]]:
    for source in map(Path, sources):
        if source.is_file():
            yield source.name, Entry(source.read_bytes())
        elif source.is_dir():
            for file in sorted(source.rglob("*")):
                relative = file.relative_to(source.parent)
                if file.is_file() and not _skipped(relative):
                    yield relative.as_posix(), Entry(file.read_bytes())
        else:
            raise InvalidConfig(f"source {source} does not exist")


def _skipped(relative: Path) -> bool:
    return relative.suffix in _SKIPPED_SUFFIXES or any(
        part in _SKIPPED_DIRS for part in relative.parts
    )

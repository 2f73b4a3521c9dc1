"""A local fake of DigitalOcean Functions: the v2 namespaces API and each namespace's OpenWhisk API.

One HTTP server on a free port plays both ``api.digitalocean.com`` and every namespace's
``api_host`` (itself), with the documented shapes: namespaces ``{api_host, namespace, uuid,
key, label, region, ...}`` (no ``id``), DigitalOcean errors ``{id, message, request_id}`` with
``ratelimit-*`` headers on 429, OpenWhisk errors ``{error, code}``, action records, and
activation records (``duration``, ``annotations`` with ``initTime`` on a cold start only,
``waitTime``, ``limits``, ``timeout``; ``response {status, success, result}``).

Invocations really run the deployed zip: each action gets a pool of worker processes
(``_openwhisk_worker.py``, one activation at a time each, like OpenWhisk's containers), so the
package is proven the way the runtime loads it. A run past the action's ``limits.timeout`` is
killed and recorded as OpenWhisk does ("The action exceeded its time limits"). A test can
script what the platform does around the action (:class:`Script`): throttle, fail internally,
or answer 202 and make the record appear only after some polls.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import io
import json
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

_WORKER = Path(__file__).with_name("_openwhisk_worker.py")
_KINDS = frozenset({"python:3.9", "python:3.11", "python:3.12", "python:3.13"})
_MAX_NAMESPACES = 10
_MAX_PARAMETERS_BYTES = 1024 * 1024
_API_RATE_LIMIT = 250
_WORKER_START_TIMEOUT_S = 30.0


class Script(StrEnum):
    """What the platform does with a job's invocations, around the action itself."""

    RUN = "run"
    #: 429, as OpenWhisk's throttles answer: ``{error, code}``, no Retry-After.
    THROTTLE = "throttle"
    #: 500 with a ``whisk internal error`` activation record.
    INTERNAL_ERROR = "internal_error"
    #: The action runs, but the blocking wait "ends" first: 202, and the record is 404 for a
    #: few polls.
    ASYNC = "async"


@dataclass
class _Namespace:
    record: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.record["namespace"])


@dataclass
class _Action:
    record: dict[str, Any]
    directory: Path
    parameters: dict[str, Any]
    idle: list[subprocess.Popen[str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeDigitalOcean:
    """The fake platform; a context manager that serves while inside the block.

    Parameters
    ----------
    token:
        The DigitalOcean API token it accepts (Bearer).
    """

    def __init__(self, token: str, work_dir: Path | None = None) -> None:
        self.token = token
        self.namespaces: list[_Namespace] = []
        self.api_requests: Counter[tuple[str, str]] = Counter()
        self.invocations: Counter[str] = Counter()
        self.scripts: dict[str, Script] = {}
        self.async_pending_polls = 2
        self.api_throttled = 0
        self.api_reset_in_s = 7
        self._actions: dict[tuple[str, str], _Action] = {}
        self._activations: dict[str, tuple[dict[str, Any], list[int]]] = {}
        self._lock = threading.Lock()
        self._temp = tempfile.TemporaryDirectory(prefix="fake-do-", dir=work_dir)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeDigitalOcean:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=30)
        with self._lock:
            actions = list(self._actions.values())
            self._actions.clear()
        for action in actions:
            stop_workers(action)
        self._temp.cleanup()

    # -- what tests set up and read -------------------------------------------------------

    def add_namespace(self, label: str, region: str) -> dict[str, Any]:
        """Create a namespace as the API would; returns its record."""
        with self._lock:
            return self._create_namespace(label, region).record

    def action(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored record of an action, parameters included; None when missing."""
        with self._lock:
            found = self._actions.get((namespace, name))
            return None if found is None else {**found.record, "parameters": found.parameters}

    def invocations_of(self, name: str) -> int:
        with self._lock:
            return self.invocations[name]

    def api_count(self, method: str, path: str) -> int:
        with self._lock:
            return self.api_requests[(method, path)]

    @contextlib.contextmanager
    def scripted(self, name: str, script: Script) -> Any:
        with self._lock:
            self.scripts[name] = script
        try:
            yield
        finally:
            with self._lock:
                self.scripts.pop(name, None)

    # -- the DigitalOcean API ----------------------------------------------------------

    def _create_namespace(self, label: str, region: str) -> _Namespace:
        ident = str(uuid.uuid4())
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        namespace = _Namespace(
            {
                "api_host": self.url,
                "namespace": f"fn-{ident}",
                "created_at": now,
                "updated_at": now,
                "label": label,
                "region": region,
                "uuid": str(uuid.uuid4()),
                "key": secrets.token_hex(32),
            }
        )
        self.namespaces.append(namespace)
        return namespace

    def _do_api(self, method: str, path: str, headers: Any, body: bytes) -> _Answer:
        with self._lock:
            self.api_requests[(method, path)] += 1
            if headers.get("Authorization") != f"Bearer {self.token}":
                return _do_error(401, "unauthorized", "Unable to authenticate you.")
            if self.api_throttled > 0:
                self.api_throttled -= 1
                answer = _do_error(429, "too_many_requests", "API rate limit exceeded.")
                answer.headers["ratelimit-remaining"] = "0"
                answer.headers["ratelimit-reset"] = str(int(time.time()) + self.api_reset_in_s)
                return answer
            if path != "/v2/functions/namespaces":
                return _do_error(404, "not_found", "The resource could not be found.")
            if method == "GET":
                return _Answer(200, {"namespaces": [ns.record for ns in self.namespaces]})
            if method != "POST":
                return _do_error(405, "method_not_allowed", "Method not allowed.")
            request = _json_or_none(body)
            if (
                not isinstance(request, dict)
                or not request.get("label")
                or not request.get("region")
            ):
                return _do_error(404, "not_found", "label and region are required")
            if len(self.namespaces) >= _MAX_NAMESPACES:
                return _do_error(422, "unprocessable_entity", "namespace limit reached")
            created = self._create_namespace(str(request["label"]), str(request["region"]))
            return _Answer(200, {"namespace": created.record})

    # -- the OpenWhisk API -----------------------------------------------------------

    def _openwhisk(self, method: str, target: str, headers: Any, body: bytes) -> _Answer:
        parts = urlsplit(target)
        query = parse_qs(parts.query)
        segments = parts.path.strip("/").split("/")
        # api / v1 / namespaces / {ns} / (actions|activations) / {name}
        if len(segments) != 6 or segments[:3] != ["api", "v1", "namespaces"]:
            return _ow_error(404, "The requested resource does not exist.")
        ns_name, collection, name = segments[3], segments[4], segments[5]
        with self._lock:
            namespace = next((ns for ns in self.namespaces if ns.name == ns_name), None)
        if namespace is None or not _basic_auth_matches(headers, namespace):
            return _ow_error(401, "The supplied authentication is invalid.")
        if collection == "activations" and method == "GET":
            return self._get_activation(name)
        if collection != "actions":
            return _ow_error(404, "The requested resource does not exist.")
        if method == "PUT":
            return self._put_action(namespace, name, body, query)
        if method == "GET":
            with self._lock:
                action = self._actions.get((ns_name, name))
            if action is None:
                return _ow_error(404, "The requested resource does not exist.")
            return _Answer(200, action.record)
        if method == "DELETE":
            with self._lock:
                action = self._actions.pop((ns_name, name), None)
            if action is None:
                return _ow_error(404, "The requested resource does not exist.")
            stop_workers(action)
            return _Answer(200, action.record)
        if method == "POST":
            return self._invoke(ns_name, name, body, query)
        return _ow_error(405, "Method not allowed.")

    def _put_action(
        self, namespace: _Namespace, name: str, body: bytes, query: dict[str, list[str]]
    ) -> _Answer:
        request = _json_or_none(body)
        if not isinstance(request, dict):
            return _ow_error(400, "The request content was malformed.")
        exec_ = request.get("exec") or {}
        limits = request.get("limits") or {}
        if exec_.get("kind") not in _KINDS or exec_.get("binary") is not True:
            return _ow_error(400, "exec must be a binary python action of a supported kind")
        memory = limits.get("memory", 256)
        timeout = limits.get("timeout", 60_000)
        if not 128 <= memory <= 1024 or not 100 <= timeout <= 900_000:
            return _ow_error(400, "limits out of range")
        try:
            archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(exec_["code"], validate=True)))
        except (KeyError, ValueError, zipfile.BadZipFile):
            return _ow_error(400, "exec.code is not a base64 zip")
        if "__main__.py" not in archive.namelist():
            return _ow_error(400, "the zip has no __main__.py")
        parameters = {entry["key"]: entry["value"] for entry in request.get("parameters") or []}
        key = (namespace.name, name)
        with self._lock:
            old = self._actions.get(key)
            if old is not None and query.get("overwrite") != ["true"]:
                return _ow_error(409, "resource already exists")
            version = 1 if old is None else int(old.record["version"].rsplit(".", 1)[1]) + 1
            directory = Path(self._temp.name) / f"{namespace.name}-{name}-{version}"
            archive.extractall(directory)
            record = {
                "namespace": namespace.name,
                "name": name,
                "version": f"0.0.{version}",
                "exec": {"kind": exec_["kind"], "binary": True, "main": exec_.get("main")},
                "limits": {"timeout": timeout, "memory": memory, "logs": 16, "concurrency": 1},
                "parameters": [{"key": key_, "value": "..."} for key_ in parameters],
                "annotations": request.get("annotations") or [],
                "publish": False,
                "updated": int(time.time() * 1000),
            }
            self._actions[key] = _Action(record, directory, parameters)
        if old is not None:
            stop_workers(old)
        return _Answer(200, record)

    def _invoke(self, ns_name: str, name: str, body: bytes, query: dict[str, list[str]]) -> _Answer:
        with self._lock:
            action = self._actions.get((ns_name, name))
            if action is None:
                return _ow_error(404, "The requested resource does not exist.")
            self.invocations[name] += 1
            script = self.scripts.get(name, Script.RUN)
        if len(body) + len(json.dumps(action.parameters)) > _MAX_PARAMETERS_BYTES:
            return _ow_error(413, "The request content was too large.")
        if script is Script.THROTTLE:
            return _ow_error(
                429, "Too many requests in the last minute (count: 601, allowed: 600)."
            )
        if script is Script.INTERNAL_ERROR:
            record = _activation(ns_name, action, "whisk internal error", {"error": "boom"}, 0)
            return _Answer(500, record)
        request = _json_or_none(body)
        if not isinstance(request, dict):
            return _ow_error(400, "The request content was malformed.")
        record = self._run(ns_name, action, {**action.parameters, **request})
        if script is Script.ASYNC:
            with self._lock:
                self._activations[record["activationId"]] = (record, [self.async_pending_polls])
            return _Answer(202, {"activationId": record["activationId"]})
        with self._lock:
            self._activations[record["activationId"]] = (record, [0])
        status = 200 if record["response"]["success"] else 502
        return _Answer(status, record)

    def _get_activation(self, activation_id: str) -> _Answer:
        with self._lock:
            found = self._activations.get(activation_id)
            if found is None or found[1][0] > 0:
                if found is not None:
                    found[1][0] -= 1
                return _ow_error(404, "The requested resource does not exist.")
            return _Answer(200, found[0])

    def _run(self, ns_name: str, action: _Action, args: dict[str, Any]) -> dict[str, Any]:
        timeout_s = action.record["limits"]["timeout"] / 1000
        with action.lock:
            worker = action.idle.pop() if action.idle else None
        started = time.time()
        init_ms = None
        if worker is None:
            worker = start_worker(action.directory)
            init_ms = int((time.time() - started) * 1000)
        reply = ask(worker, args, timeout_s)
        duration_ms = int((time.time() - started) * 1000)
        if reply is None:
            worker.kill()
            worker.wait()
            limit_ms = action.record["limits"]["timeout"]
            error = {"error": f"The action exceeded its time limits of {limit_ms} milliseconds."}
            return _activation(
                ns_name, action, "action developer error", error, duration_ms, init_ms, timeout=True
            )
        with action.lock:
            action.idle.append(worker)
        if "raised" in reply:
            error = {"error": f"An error has occurred: {reply['raised']}"}
            return _activation(
                ns_name, action, "action developer error", error, duration_ms, init_ms
            )
        result = reply["result"]
        failed = isinstance(result, dict) and "error" in result
        status = "application error" if failed else "success"
        return _activation(ns_name, action, status, result, duration_ms, init_ms)

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, the body would wait for
            # the client's delayed ACK (40 ms) on every reused connection.
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                if path.startswith("/v2/"):
                    answer = fake._do_api(self.command, path, self.headers, body)
                else:
                    answer = fake._openwhisk(self.command, self.path, self.headers, body)
                content = json.dumps(answer.body).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_PUT = do_POST = do_DELETE = _serve

            def log_message(self, format: str, *args: object) -> None:
                return None

        return Handler


@dataclass
class _Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def _do_error(status: int, ident: str, message: str) -> _Answer:
    headers = {"ratelimit-limit": str(_API_RATE_LIMIT), "ratelimit-remaining": "249"}
    body = {"id": ident, "message": message, "request_id": str(uuid.uuid4())}
    return _Answer(status, body, headers)


def _ow_error(status: int, message: str) -> _Answer:
    return _Answer(status, {"error": message, "code": secrets.token_hex(16)})


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _basic_auth_matches(headers: Any, namespace: _Namespace) -> bool:
    expected = f"{namespace.record['uuid']}:{namespace.record['key']}".encode()
    return bool(headers.get("Authorization") == f"Basic {base64.b64encode(expected).decode()}")


def _activation(
    ns_name: str,
    action: _Action,
    status: str,
    result: Any,
    duration_ms: int,
    init_ms: int | None = None,
    *,
    timeout: bool = False,
) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    annotations: list[dict[str, Any]] = [
        {"key": "path", "value": f"{ns_name}/{action.record['name']}"},
        {"key": "waitTime", "value": 3},
        {"key": "kind", "value": action.record["exec"]["kind"]},
        {"key": "timeout", "value": timeout},
        {"key": "limits", "value": action.record["limits"]},
    ]
    if init_ms is not None:
        annotations.append({"key": "initTime", "value": init_ms})
    return {
        "activationId": uuid.uuid4().hex,
        "namespace": ns_name,
        "name": action.record["name"],
        "version": action.record["version"],
        "subject": "fake",
        "start": now_ms - duration_ms,
        "end": now_ms,
        "duration": duration_ms,
        "logs": [],
        "annotations": annotations,
        "publish": False,
        "response": {"status": status, "success": status == "success", "result": result},
    }


def start_worker(directory: Path) -> subprocess.Popen[str]:
    # A clean environment: the job's env vars must arrive through the action's parameters.
    worker = subprocess.Popen(
        [sys.executable, str(_WORKER), str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        cwd=directory,
    )
    ready = _read_line(worker, _WORKER_START_TIMEOUT_S)
    if ready is None:
        worker.kill()
        worker.wait()
        raise RuntimeError("the fake action worker did not start")
    return worker


def ask(worker: subprocess.Popen[str], args: dict[str, Any], timeout_s: float) -> Any:
    assert worker.stdin is not None
    worker.stdin.write(json.dumps({"args": args}) + "\n")
    worker.stdin.flush()
    return _read_line(worker, timeout_s)


def _read_line(worker: subprocess.Popen[str], timeout_s: float) -> Any:
    """The worker's next JSON line, or None when it says nothing within ``timeout_s``."""
    assert worker.stdout is not None
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(worker.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout_s)
    if not line or not line[0]:
        return None
    return json.loads(line[0])


def stop_workers(action: _Action) -> None:
    with action.lock:
        workers, action.idle = action.idle, []
    for worker in workers:
        worker.kill()
        worker.wait()


def _serve_until_stopped() -> None:
    """``python -m tests.providers._digitalocean_fake TOKEN``: serve, print the URL, wait."""
    with FakeDigitalOcean(sys.argv[1]) as fake:
        print(f"serving {fake.url}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    _serve_until_stopped()

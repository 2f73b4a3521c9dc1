"""A local Cloud Functions (2nd gen) platform: the documented v2 wire, real functions behind it.

There is no emulator of the Cloud Functions control plane, so this small server plays it, as
the v2 REST reference describes it (``docs/providers/gcp.md`` lists what is verified):

- an OAuth token endpoint for google-auth's service-account flow, which issues access tokens
  (``scope``) and ID tokens (``target_audience``), signed by the platform's own key, counted;
- ``functions:generateUploadUrl`` and the signed URL it hands out, which takes a PUT of
  ``application/zip`` with no ``Authorization`` header;
- create (``?functionId=``), PATCH (``?updateMask=``), GET and DELETE of functions, each
  write answered with a long-running operation that is done only once the work is (and after
  at least ``polls_before_done`` polls), failing inside the operation with ``ALREADY_EXISTS``
  on a create of an existing function, as GCP does;
- Google error bodies ``{"error": {"code", "message", "status"}}``;
- the invocation front, Cloud Run's part: an ID token whose audience is the function's URI or
  401, the invoker role or 403, at most ``maxInstanceCount`` requests at once (one per
  instance) or 429, the function's timeout or 504.

A deploy unzips the uploaded source and really starts ``functions-framework`` on it (its own
process, on a free port), so an invocation runs the generated ``main.py`` and handler core.
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import io
import itertools
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt

from providers.packaging.gcp import ENTRY_POINT
from tests.processes import free_port, stop_process

PROJECT = "blueprint-test"
REGION = "europe-west1"
#: What the front sends with a 429.
THROTTLE_RETRY_AFTER_S = 1
_FUNCTION_ID = re.compile(r"[a-z][a-z0-9-]{2,61}[a-z0-9]")
_GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
_READY_DEADLINE_S = 60.0
_RELAY_CONNECT_S = 10.0
# The canonical code names the v2 API writes in its errors, by HTTP status.
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
}


def generate_rsa_key() -> tuple[str, str]:
    """A fresh RSA key pair as PEM text: (private, public)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@dataclass
class _Backend:
    """One revision's functions-framework process."""

    process: subprocess.Popen[bytes]
    port: int


@dataclass
class _Function:
    resource: dict[str, Any]
    backend: _Backend | None = None
    revision: int = 0
    in_flight: int = 0


@dataclass
class _Operation:
    name: str
    verb: str
    target: str
    thread: threading.Thread | None = None
    polls: int = 0
    error: tuple[int, str] | None = None
    response: dict[str, Any] | None = None
    started: str = field(default_factory=lambda: _now())


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class GcpPlatform:
    """The local platform; use as a context manager, which stops every function on exit.

    Parameters
    ----------
    work_dir:
        Where sources are unpacked and the service-account file is written.
    polls_before_done:
        How many polls of an operation answer ``done: false`` at least.
    id_token_lifetime_s:
        The lifetime of the ID tokens issued (a short one makes every call fetch anew).
    """

    def __init__(
        self, work_dir: Path, *, polls_before_done: int = 1, id_token_lifetime_s: int = 3600
    ) -> None:
        self.work_dir = work_dir
        self.polls_before_done = polls_before_done
        self.id_token_lifetime_s = id_token_lifetime_s
        #: Token grants by kind ("access", "id").
        self.token_grants: Counter[str] = Counter()
        #: Every request to the control plane: (method, path, query).
        self.api_calls: list[tuple[str, str, dict[str, list[str]]]] = []
        self._invocations: Counter[str] = Counter()
        self._failing: set[str] = set()
        self._denied: set[str] = set()
        self._functions: dict[str, _Function] = {}
        self._operations: dict[str, _Operation] = {}
        self._objects: dict[str, bytes | None] = {}
        self._access_tokens: set[str] = set()
        self._id_tokens: list[str] = []
        self._revoked_id_tokens: set[str] = set()
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._sa_private, self._sa_public = generate_rsa_key()
        self._google_private, self._google_public = generate_rsa_key()
        self._google_signer = crypt.RSASigner.from_string(self._google_private, "google-key")
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._relay = httpx.Client()
        self.service_account_file = work_dir / "service-account.json"
        self.service_account_email = f"deployer@{PROJECT}.iam.gserviceaccount.com"

    # -- running --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> GcpPlatform:
        self._thread.start()
        self.service_account_file.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": PROJECT,
                    "private_key_id": "deployer-key",
                    "private_key": self._sa_private,
                    "client_email": self.service_account_email,
                    "client_id": "1234567890",
                    "token_uri": f"{self.base_url}/token",
                }
            )
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=30)
        with self._lock:
            functions = list(self._functions.values())
            operations = list(self._operations.values())
        for operation in operations:
            if operation.thread is not None:
                operation.thread.join(timeout=_READY_DEADLINE_S)
        for function in functions:
            if function.backend is not None:
                _stop(function.backend)
        self._relay.close()

    # -- what tests control and read ------------------------------------------------------

    def invocations(self, function_id: str) -> int:
        """Invoke requests for ``function_id`` that passed authentication."""
        with self._lock:
            return self._invocations[function_id]

    def function(self, function_id: str) -> dict[str, Any] | None:
        """The stored Function resource, as GET answers it."""
        with self._lock:
            stored = self._functions.get(function_id)
            return None if stored is None else copy.deepcopy(stored.resource)

    @contextlib.contextmanager
    def failing(self, function_id: str) -> Iterator[None]:
        """The front answers 500 for ``function_id``, as Cloud Run does when it fails itself."""
        with self._lock:
            self._failing.add(function_id)
        try:
            yield
        finally:
            with self._lock:
                self._failing.discard(function_id)

    @contextlib.contextmanager
    def denying(self, function_id: str) -> Iterator[None]:
        """Callers lack the invoker role on ``function_id``: valid tokens get 403."""
        with self._lock:
            self._denied.add(function_id)
        try:
            yield
        finally:
            with self._lock:
                self._denied.discard(function_id)

    def issued_tokens(self) -> tuple[str, ...]:
        """Every access and ID token issued so far."""
        with self._lock:
            return (*self._access_tokens, *self._id_tokens)

    def revoke_tokens(self) -> None:
        """Every token issued so far is refused from now on (401)."""
        with self._lock:
            self._access_tokens.clear()
            self._revoked_id_tokens.update(self._id_tokens)

    # -- the wire ---------------------------------------------------------------------------

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        platform = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers, content = platform._route(
                    self.command, self.path, dict(self.headers.items()), body
                )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: object) -> None:
                return None

        return Handler

    def _route(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query)
        lowered = {name.lower(): value for name, value in headers.items()}
        if path == "/token" and method == "POST":
            return self._token(body)
        if path.startswith("/upload/") and method == "PUT":
            return self._upload(path.removeprefix("/upload/"), query, lowered, body)
        if path.startswith("/run/") and method == "POST":
            return self._invoke(path.removeprefix("/run/"), lowered, body)
        if path.startswith("/v2/"):
            with self._lock:
                self.api_calls.append((method, path, query))
            token = lowered.get("authorization", "").removeprefix("Bearer ")
            with self._lock:
                known = token in self._access_tokens
            if not known:
                return _google_error(401, "Request had invalid authentication credentials.")
            return self._api(method, path.removeprefix("/v2/"), query, body)
        return 404, {"Content-Type": "text/html"}, b"<html>Error: Page not found</html>"

    def _token(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        form = parse_qs(body.decode())
        assertion = form.get("assertion", [""])[0]
        try:
            # google-auth signs for Google's token endpoint whatever token_uri it posts to.
            claims = jwt.decode(assertion, certs=self._sa_public, audience=_GOOGLE_TOKEN_AUDIENCE)
        except ValueError:
            return _json(400, {"error": "invalid_grant", "error_description": "Invalid JWT."})
        now = int(time.time())
        if "target_audience" in claims:
            with self._lock:
                self.token_grants["id"] += 1
            payload = {
                "iss": "https://accounts.google.com",
                "aud": claims["target_audience"],
                "sub": "1234567890",
                "email": self.service_account_email,
                "iat": now,
                "exp": now + self.id_token_lifetime_s,
                "jti": secrets.token_hex(8),
            }
            token = jwt.encode(self._google_signer, payload).decode()
            with self._lock:
                self._id_tokens.append(token)
            return _json(200, {"id_token": token})
        access = f"ya29.{secrets.token_urlsafe(24)}"
        with self._lock:
            self.token_grants["access"] += 1
            self._access_tokens.add(access)
        return _json(200, {"access_token": access, "expires_in": 3599, "token_type": "Bearer"})

    def _upload(
        self, name: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            expected = name in self._objects and self._objects[name] is None
        signed = query.get("X-Goog-Signature", [""])[0] == _signature(name)
        if "authorization" in headers:
            return 400, {"Content-Type": "application/xml"}, _xml_error("InvalidAuthentication")
        if not (expected and signed) or headers.get("content-type") != "application/zip":
            return 403, {"Content-Type": "application/xml"}, _xml_error("SignatureDoesNotMatch")
        with self._lock:
            self._objects[name] = body
        return 200, {}, b""

    def _api(
        self, method: str, name: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parent = f"projects/{PROJECT}/locations/{REGION}"
        if name == f"{parent}/functions:generateUploadUrl" and method == "POST":
            return self._generate_upload_url()
        if name == f"{parent}/functions" and method == "POST":
            return self._create(query.get("functionId", [""])[0], json.loads(body or b"{}"))
        if name.startswith(f"{parent}/operations/") and method == "GET":
            return self._operation(name)
        if name.startswith(f"{parent}/functions/"):
            function_id = name.removeprefix(f"{parent}/functions/")
            if method == "GET":
                return self._get(function_id)
            if method == "PATCH":
                mask = query.get("updateMask", [""])[0].split(",")
                return self._patch(function_id, mask, json.loads(body or b"{}"))
            if method == "DELETE":
                return self._delete(function_id)
        return _google_error(404, f"Method not found: {method} {name}")

    def _generate_upload_url(self) -> tuple[int, dict[str, str], bytes]:
        name = f"{secrets.token_hex(8)}.zip"
        with self._lock:
            self._objects[name] = None
        return _json(
            200,
            {
                "uploadUrl": f"{self.base_url}/upload/{name}?X-Goog-Algorithm=GOOG4-RSA-SHA256"
                f"&X-Goog-Signature={_signature(name)}",
                "storageSource": {"bucket": f"gcf-v2-uploads-{PROJECT}", "object": name},
            },
        )

    def _create(
        self, function_id: str, resource: dict[str, Any]
    ) -> tuple[int, dict[str, str], bytes]:
        if not _FUNCTION_ID.fullmatch(function_id):
            return _google_error(400, f"Invalid function id {function_id!r}")
        problem = self._check_resource(function_id, resource)
        if problem is not None:
            return _google_error(400, problem)
        operation = self._new_operation("create", function_id)
        with self._lock:
            exists = function_id in self._functions
            if exists:
                operation.error = (6, f"Function {function_id} already exists")
            else:
                self._functions[function_id] = _Function(self._with_outputs(function_id, resource))
        if not exists:
            self._start(operation, self._deploy, function_id)
        return _json(200, self._operation_body(operation))

    def _patch(
        self, function_id: str, mask: list[str], update: dict[str, Any]
    ) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            stored = self._functions.get(function_id)
            if stored is None:
                return _google_error(404, f"Function {function_id} does not exist")
            problem = self._check_resource(function_id, update)
            if problem is not None:
                return _google_error(400, problem)
            for path in mask:
                _set_path(stored.resource, path, _get_path(update, path))
            stored.resource["state"] = "DEPLOYING"
        operation = self._new_operation("update", function_id)
        self._start(operation, self._deploy, function_id)
        return _json(200, self._operation_body(operation))

    def _get(self, function_id: str) -> tuple[int, dict[str, str], bytes]:
        resource = self.function(function_id)
        if resource is None:
            return _google_error(404, f"Function {function_id} does not exist")
        return _json(200, resource)

    def _delete(self, function_id: str) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            if function_id not in self._functions:
                return _google_error(404, f"Function {function_id} does not exist")
            self._functions[function_id].resource["state"] = "DELETING"
        operation = self._new_operation("delete", function_id)
        self._start(operation, self._remove, function_id)
        return _json(200, self._operation_body(operation))

    def _operation(self, name: str) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            operation = self._operations.get(name)
            if operation is None:
                return _google_error(404, f"Operation {name} does not exist")
            operation.polls += 1
        return _json(200, self._operation_body(operation))

    # -- operations and functions -------------------------------------------------------

    def _check_resource(self, function_id: str, resource: dict[str, Any]) -> str | None:
        expected = f"projects/{PROJECT}/locations/{REGION}/functions/{function_id}"
        if resource.get("name") != expected:
            return f"the function's name must be {expected}"
        source = _get_path(resource, "buildConfig.source.storageSource") or {}
        with self._lock:
            uploaded = self._objects.get(source.get("object", ""))
        if uploaded is None:
            return "buildConfig.source.storageSource names no uploaded object"
        return None

    def _with_outputs(self, function_id: str, resource: dict[str, Any]) -> dict[str, Any]:
        resource = copy.deepcopy(resource)
        resource["state"] = "DEPLOYING"
        resource["url"] = f"https://{REGION}-{PROJECT}.cloudfunctions.net/{function_id}"
        resource.setdefault("serviceConfig", {})["uri"] = f"{self.base_url}/run/{function_id}"
        resource["updateTime"] = _now()
        return resource

    def _new_operation(self, verb: str, function_id: str) -> _Operation:
        name = f"projects/{PROJECT}/locations/{REGION}/operations/operation-{next(self._ids)}"
        target = f"projects/{PROJECT}/locations/{REGION}/functions/{function_id}"
        operation = _Operation(name=name, verb=verb, target=target)
        with self._lock:
            self._operations[name] = operation
        return operation

    def _start(self, operation: _Operation, work: Any, function_id: str) -> None:
        def run() -> None:
            try:
                operation.response = work(function_id)
            except _DeployFailed as failure:
                operation.error = (failure.code, failure.message)

        operation.thread = threading.Thread(target=run, daemon=True)
        operation.thread.start()

    def _operation_body(self, operation: _Operation) -> dict[str, Any]:
        running = operation.thread is not None and operation.thread.is_alive()
        done = not running and operation.polls >= self.polls_before_done
        body: dict[str, Any] = {
            "name": operation.name,
            "metadata": {
                "@type": "type.googleapis.com/google.cloud.functions.v2.OperationMetadata",
                "createTime": operation.started,
                "target": operation.target,
                "verb": operation.verb,
                "apiVersion": "v2",
                "stages": [
                    {"name": "BUILD", "state": "COMPLETE" if not running else "IN_PROGRESS"},
                    {"name": "SERVICE", "state": "COMPLETE" if done else "IN_PROGRESS"},
                ],
            },
            "done": done,
        }
        if done and operation.error is not None:
            code, message = operation.error
            body["error"] = {"code": code, "message": message, "details": []}
        elif done and operation.response is not None:
            body["response"] = {
                "@type": "type.googleapis.com/google.cloud.functions.v2.Function",
                **operation.response,
            }
        return body

    def _deploy(self, function_id: str) -> dict[str, Any]:
        """Unpack the source, start functions-framework on it, switch traffic, stop the old."""
        with self._lock:
            stored = self._functions[function_id]
            stored.revision += 1
            resource = copy.deepcopy(stored.resource)
            source = _get_path(resource, "buildConfig.source.storageSource")
            package = self._objects[source["object"]]
        assert package is not None
        source_dir = self.work_dir / function_id / f"revision-{stored.revision}"
        with zipfile.ZipFile(io.BytesIO(package)) as archive:
            archive.extractall(source_dir)
        if not (source_dir / "main.py").is_file():
            raise _DeployFailed(3, "Build failed: missing main.py in the source")
        backend = _start_backend(source_dir, resource)
        with self._lock:
            old, stored.backend = stored.backend, backend
            stored.resource["state"] = "ACTIVE"
            stored.resource["updateTime"] = _now()
            stored.resource["serviceConfig"]["revision"] = f"{function_id}-{stored.revision:05d}"
            finished = copy.deepcopy(stored.resource)
        if old is not None:
            _stop(old)
        return finished

    def _remove(self, function_id: str) -> None:
        with self._lock:
            stored = self._functions.pop(function_id)
        if stored.backend is not None:
            _stop(stored.backend)
        return None

    # -- the invocation front --------------------------------------------------------------

    def _invoke(
        self, function_id: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        uri = f"{self.base_url}/run/{function_id}"
        if not self._id_token_accepted(headers.get("authorization", ""), uri):
            return 401, {"Content-Type": "text/html"}, b"<html>401 Unauthorized</html>"
        with self._lock:
            stored = self._functions.get(function_id)
            if stored is None or stored.backend is None:
                return 404, {"Content-Type": "text/html"}, b"<html>Error: Page not found</html>"
            if function_id in self._denied:
                return 403, {"Content-Type": "text/html"}, b"<html>403 Forbidden</html>"
            self._invocations[function_id] += 1
            if function_id in self._failing:
                return 500, {"Content-Type": "text/plain"}, b"Internal Server Error"
            service = stored.resource["serviceConfig"]
            if stored.in_flight >= int(service.get("maxInstanceCount", 100)):
                return (
                    429,
                    {"Content-Type": "text/plain", "Retry-After": str(THROTTLE_RETRY_AFTER_S)},
                    b"Rate exceeded.",
                )
            stored.in_flight += 1
            backend = stored.backend
        try:
            answer = self._relay.post(
                f"http://127.0.0.1:{backend.port}/",
                content=body,
                headers={"Content-Type": headers.get("content-type", "application/json")},
                timeout=httpx.Timeout(
                    float(service.get("timeoutSeconds", 60)), connect=_RELAY_CONNECT_S
                ),
            )
        except httpx.ReadTimeout:
            return 504, {"Content-Type": "text/plain"}, b"upstream request timeout"
        finally:
            with self._lock:
                stored.in_flight -= 1
        relayed = {"Content-Type": answer.headers.get("content-type", "text/plain")}
        return answer.status_code, relayed, answer.content

    def _id_token_accepted(self, authorization: str, audience: str) -> bool:
        token = authorization.removeprefix("Bearer ")
        try:
            jwt.decode(token, certs=self._google_public, audience=audience)
        except ValueError:
            return False
        with self._lock:
            return token not in self._revoked_id_tokens


class _DeployFailed(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _start_backend(source_dir: Path, resource: dict[str, Any]) -> _Backend:
    service = resource.get("serviceConfig", {})
    env = {
        "K_SERVICE": resource["name"].rsplit("/", 1)[-1],
        "K_REVISION": service.get("revision", "1"),
        **service.get("environmentVariables", {}),
    }
    return _start_functions_framework(source_dir, resource["buildConfig"]["entryPoint"], env)


@contextlib.contextmanager
def serving(package: bytes, directory: Path, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Unpack a source zip into ``directory`` and serve it as the runtime does; yield its URL.

    For tests of the package alone: no platform, no tokens.
    """
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        archive.extractall(directory)
    backend = _start_functions_framework(directory, ENTRY_POINT, dict(env or {}))
    try:
        yield f"http://127.0.0.1:{backend.port}/"
    finally:
        _stop(backend)


def _start_functions_framework(
    source_dir: Path, entry_point: str, env: Mapping[str, str]
) -> _Backend:
    port = free_port()
    process_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        # One worker process, as an instance with maxInstanceRequestConcurrency 1 has.
        "WORKERS": "1",
        **env,
    }
    command = [sys.executable, "-m", "functions_framework", "--target", entry_point]
    command += ["--source", str(source_dir / "main.py"), "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    process = subprocess.Popen(
        command, cwd=source_dir, env=process_env, start_new_session=True, stdout=subprocess.DEVNULL
    )
    backend = _Backend(process, port)
    deadline = time.monotonic() + _READY_DEADLINE_S
    while not _accepts(port):
        if process.poll() is not None:
            raise _DeployFailed(3, "Function failed on loading user code")
        if time.monotonic() > deadline:
            _stop(backend)
            raise _DeployFailed(4, "the function did not start in time")
        time.sleep(0.05)
    return backend


def _accepts(port: int) -> bool:
    # A TCP connect, not a request: a request would use up the instance's fresh flag.
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _stop(backend: _Backend) -> None:
    # gunicorn's quick shutdown: a graceful one would wait for a request still running.
    stop_process(backend.process, signal.SIGQUIT)


def _signature(name: str) -> str:
    return f"sig{abs(hash((name, 'gcp-platform'))):x}"


def _get_path(resource: Mapping[str, Any], path: str) -> Any:
    value: Any = resource
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _set_path(resource: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    target = resource
    for part in parents:
        target = target.setdefault(part, {})
    if value is None:
        target.pop(last, None)
    else:
        target[last] = copy.deepcopy(value)


def _json(status: int, body: object) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def _google_error(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    name = _STATUS_NAMES.get(status, "UNKNOWN")
    return _json(status, {"error": {"code": status, "message": message, "status": name}})


def _xml_error(code: str) -> bytes:
    return f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code></Error>".encode()

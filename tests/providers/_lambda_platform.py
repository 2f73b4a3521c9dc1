"""A local Lambda for the aws provider's tests: moto's server, and a front that runs the code.

moto (``moto_server``, a process on a free port, Lambda's non-docker backend) is the control
plane: create, update, get, delete, concurrency, versions, aliases and S3 are all its own.
It never runs code, so the executor talks to a *front* (a local HTTP server) that passes every
request on to moto and its answer back, except for what moto cannot do:

- **Invoke** runs the function's real package: the zip the executor uploaded (captured on its
  way to moto, or read back from moto's S3) is unpacked and run by ``_lambda_runtime.py``, one
  process per execution environment, kept warm between invocations as Lambda keeps them. The
  answer is Lambda's wire: the JSON body, ``X-Amz-Function-Error: Unhandled`` when the handler
  raised, and a base64 ``X-Amz-Log-Result`` whose REPORT line carries the run's duration,
  billed duration, memory, and ``Init Duration`` on a cold start. A run past the function's
  ``Timeout`` is stopped and answered ``Sandbox.Timedout`` with ``Status: timeout``. Reserved
  concurrency (read from moto) is enforced: a call finding every reserved environment busy is
  refused with 429 ``TooManyRequestsException``.
- **Provisioned concurrency** (not in moto): its three calls, answering ``IN_PROGRESS`` then
  ``READY``, as documented.
- **Scripted answers**: the next answers to a call (an AWS error with its status, a delay), and
  GetFunction answering ``Pending`` / ``InProgress`` for a while, so the executor's waiting and
  error mapping meet the real wire.

Every request that reaches the front is counted, by action and function.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import httpx

from tests.processes import free_port, stop_process, wait_until

REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/blueprint-lambda"
#: The Retry-After the front sends when reserved concurrency refuses a call.
THROTTLE_RETRY_AFTER_S = 1.0
_RUNTIME = Path(__file__).with_name("_lambda_runtime.py")
_FUNCTION_PATH = re.compile(r"^/(\d{4}-\d{2}-\d{2})/functions/([^/]+)(/[a-z-]+)?(?:/[^/]+)?/?$")
_DROPPED_HEADERS = frozenset(
    {"host", "content-length", "connection", "transfer-encoding", "accept-encoding"}
)
_RELAY_SKIPPED = frozenset({"content-length", "transfer-encoding", "connection", "date", "server"})
_LOG_TAIL_BYTES = 4096
_TRUST_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)
_FORWARD_TIMEOUT = httpx.Timeout(120.0, connect=10.0)


@dataclass
class Answer:
    """A scripted answer to one request: an AWS error, or a delay before the real answer."""

    status: int = 200
    code: str | None = None
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    delay_s: float = 0.0


class MotoServer:
    """``moto_server`` as a process on a free port, with Lambda's non-docker backend."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MotoServer:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(self._ready, 60.0, "moto_server to answer")
        httpx.post(f"{self.url}/moto-api/config", json={"lambda": {"use_docker": False}})
        # moto checks that a function's role exists and that Lambda may assume it.
        self.client("iam").create_role(
            RoleName=ROLE_ARN.rsplit("/", 1)[1], AssumeRolePolicyDocument=_TRUST_POLICY
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            stop_process(self._process)

    def client(self, service: str) -> Any:
        """A boto3 client talking to moto directly (not through any front)."""
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def queue_results(self, results: list[str]) -> None:
        """Queue invoke answers of moto's simple backend (first in, first out)."""
        reply = httpx.post(
            f"{self.url}/moto-api/static/lambda-simple/response",
            json={"results": results, "region": REGION, "account_id": "123456789012"},
        )
        reply.raise_for_status()

    def _ready(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError("moto_server exited")
        try:
            return httpx.get(f"{self.url}/moto-api/data.json", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False


class _Environment:
    """One execution environment: a runtime process holding the imported handler."""

    def __init__(self, task_dir: Path, handler: str, env: dict[str, str], log: Path) -> None:
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, str(_RUNTIME), handler],
            cwd=task_dir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        # The init phase (interpreter start, handler import) is not the invocation's: the
        # function's timeout starts when the runtime says it is ready.
        assert self.process.stdout is not None
        if not self.process.stdout.readline():
            self.close()
            raise RuntimeError(f"the runtime exited during init; its log is {log}")

    def run(self, event: Any, request_id: str, timeout_s: float) -> dict[str, Any] | None:
        """The runtime's reply, or None when the run passed ``timeout_s`` (then it is killed)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        line = json.dumps({"event": event, "request_id": request_id, "deadline": time.time()})
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()
        reply: list[bytes] = []
        reader = threading.Thread(
            target=lambda: reply.append(self.process.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        reader.join(timeout_s)
        if not reply or not reply[0]:
            self.close()
            return None
        answer: dict[str, Any] = json.loads(reply[0])
        return answer

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(timeout=30)
        self._log.close()


class _Functions:
    """The environments of every function, by the version of code and config they run."""

    def __init__(self, work_dir: Path) -> None:
        self._work_dir = work_dir
        self._lock = threading.Lock()
        self._idle: dict[str, list[_Environment]] = defaultdict(list)
        self._busy: Counter[str] = Counter()
        self.code: dict[str, bytes] = {}

    def store(self, package: bytes) -> None:
        sha = base64.b64encode(hashlib.sha256(package).digest()).decode()
        with self._lock:
            self.code[sha] = package

    def take(
        self, name: str, config: dict[str, Any], reserved: int | None
    ) -> tuple[_Environment | None, bool]:
        """An idle environment or a new one (fresh: True); None when reserved ones are all busy."""
        key = self._key(name, config)
        with self._lock:
            if reserved is not None and self._busy[name] >= reserved:
                return None, False
            self._busy[name] += 1
            if self._idle[key]:
                return self._idle[key].pop(), False
        try:
            return self._start(name, config), True
        except BaseException:
            with self._lock:
                self._busy[name] -= 1
            raise

    def give_back(
        self, name: str, config: dict[str, Any], environment: _Environment | None
    ) -> None:
        with self._lock:
            self._busy[name] -= 1
            if environment is not None:
                self._idle[self._key(name, config)].append(environment)

    def forget(self, name: str) -> None:
        with self._lock:
            dropped = [key for key in self._idle if key.startswith(f"{name}|")]
            environments = [env for key in dropped for env in self._idle.pop(key)]
        for environment in environments:
            environment.close()

    def close(self) -> None:
        with self._lock:
            environments = [env for envs in self._idle.values() for env in envs]
            self._idle.clear()
        for environment in environments:
            environment.close()

    def _key(self, name: str, config: dict[str, Any]) -> str:
        parts = [config.get(k) for k in ("CodeSha256", "Handler", "MemorySize", "Timeout")]
        parts.append(config.get("Environment", {}).get("Variables", {}))
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
        return f"{name}|{digest}"

    def _start(self, name: str, config: dict[str, Any]) -> _Environment:
        sha = config["CodeSha256"]
        task_dir = self._work_dir / "tasks" / hashlib.sha256(sha.encode()).hexdigest()[:16]
        with self._lock:
            package = self.code[sha]
            if not task_dir.exists():
                task_dir.mkdir(parents=True)
                with zipfile.ZipFile(io.BytesIO(package)) as archive:
                    archive.extractall(task_dir)
        env = {
            "PATH": os.environ.get("PATH", ""),
            **config.get("Environment", {}).get("Variables", {}),
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config["MemorySize"]),
            "AWS_LAMBDA_FUNCTION_VERSION": str(config.get("Version", "$LATEST")),
            "AWS_REGION": REGION,
            "LAMBDA_TASK_ROOT": str(task_dir),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        return _Environment(task_dir, config["Handler"], env, self._work_dir / f"{name}.log")


class LambdaFront:
    """The local Lambda endpoint the executor talks to: moto behind, code run in front."""

    def __init__(self, moto: MotoServer, work_dir: Path) -> None:
        self.moto = moto
        self.requests: Counter[tuple[str, str]] = Counter()
        #: The last log tail each function's invocation sent back (decoded).
        self.last_log: dict[str, str] = {}
        self._lock = threading.Lock()
        self._scripts: dict[tuple[str, str], list[Answer]] = defaultdict(list)
        self._pending_polls: dict[str, tuple[str, str, int]] = {}
        self._provisioned: dict[str, dict[str, Any]] = {}
        self._functions = _Functions(work_dir)
        self._lambda = moto.client("lambda")
        self._s3 = moto.client("s3")
        self._upstream = httpx.Client(base_url=moto.url, timeout=_FORWARD_TIMEOUT)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> LambdaFront:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=30)
        self._functions.close()
        self._upstream.close()

    # -- what tests ask of it ---------------------------------------------------------

    def count(self, action: str, name: str) -> int:
        """Requests of ``action`` (``Invoke``, ``GetFunction``, ...) for function ``name``."""
        with self._lock:
            return self.requests[(action, name)]

    def script(self, action: str, name: str, *answers: Answer) -> None:
        """Answer the next requests of ``action`` for ``name`` with ``answers``, in order."""
        with self._lock:
            self._scripts[(action, name)].extend(answers)

    @contextlib.contextmanager
    def always(self, action: str, name: str, answer: Answer) -> Iterator[None]:
        """Answer every request of ``action`` for ``name`` with ``answer`` inside the block."""
        with self._lock:
            self._scripts[(action, name)] = [answer] * 10_000
        try:
            yield
        finally:
            with self._lock:
                self._scripts.pop((action, name), None)

    def hold_state(self, name: str, field_name: str, value: str, polls: int) -> None:
        """Make the next ``polls`` GetFunction(Configuration) answers say ``field_name=value``."""
        with self._lock:
            self._pending_polls[name] = (field_name, value, polls)

    def provisioned(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._provisioned.get(name)

    # -- the wire -----------------------------------------------------------------------

    def _answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        action, name, query = _action_of(method, path)
        with self._lock:
            self.requests[(action, name)] += 1
            script = self._scripts.get((action, name))
            scripted = script.pop(0) if script else None
        if scripted is not None:
            if scripted.code is not None:
                return _aws_error(scripted)
            time.sleep(scripted.delay_s)
        if action == "Invoke":
            return self._invoke(name, query, body)
        if action.endswith("ProvisionedConcurrencyConfig"):
            return self._provisioned_concurrency(action, name, query, body)
        status, reply_headers, reply = self._relay(method, path, headers, body)
        if status < 300:
            self._observe(action, name, body, reply)
            if action in ("GetFunction", "GetFunctionConfiguration"):
                reply = self._held_state(name, reply, nested=action == "GetFunction")
        return status, reply_headers, reply

    def _relay(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        answer = self._upstream.request(method, path, headers=headers, content=body)
        reply_headers = {
            name: value
            for name, value in answer.headers.items()
            if name.lower() not in _RELAY_SKIPPED
        }
        return answer.status_code, reply_headers, answer.content

    def _observe(self, action: str, name: str, request: bytes, reply: bytes) -> None:
        # Keep each package moto was given, to run it when the function is invoked.
        if action not in ("CreateFunction", "UpdateFunctionCode"):
            if action == "DeleteFunction":
                self._functions.forget(name)
                with self._lock:
                    self._provisioned.pop(name, None)
            return
        sent = json.loads(request)
        code = sent.get("Code", sent)
        if "ZipFile" in code:
            self._functions.store(base64.b64decode(code["ZipFile"]))
        elif "S3Key" in code:
            stored = self._s3.get_object(Bucket=code["S3Bucket"], Key=code["S3Key"])
            self._functions.store(stored["Body"].read())

    def _held_state(self, name: str, reply: bytes, *, nested: bool) -> bytes:
        with self._lock:
            held = self._pending_polls.get(name)
            if held is None:
                return reply
            field_name, value, polls = held
            if polls <= 1:
                self._pending_polls.pop(name)
            else:
                self._pending_polls[name] = (field_name, value, polls - 1)
        function = json.loads(reply)
        (function["Configuration"] if nested else function)[field_name] = value
        return json.dumps(function).encode()

    def _invoke(
        self, name: str, query: dict[str, str], event: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        qualifier = query.get("Qualifier")
        try:
            config = self._lambda.get_function_configuration(
                FunctionName=name, **({"Qualifier": qualifier} if qualifier else {})
            )
        except self._lambda.exceptions.ResourceNotFoundException:
            return _aws_error(
                Answer(404, "ResourceNotFoundException", f"Function not found: {name}")
            )
        reserved = self._lambda.get_function_concurrency(FunctionName=name).get(
            "ReservedConcurrentExecutions"
        )
        environment, fresh = self._functions.take(name, config, reserved)
        if environment is None:
            return _aws_error(
                Answer(
                    429,
                    "TooManyRequestsException",
                    "Rate Exceeded.",
                    headers={"Retry-After": str(int(THROTTLE_RETRY_AFTER_S))},
                    extra={"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"},
                )
            )
        request_id = str(uuid.uuid4())
        timeout_s = float(config["Timeout"])
        try:
            ran = environment.run(json.loads(event), request_id, timeout_s)
        except BaseException:
            self._functions.give_back(name, config, None)
            environment.close()
            raise
        # A run past its timeout was killed: its environment is gone.
        self._functions.give_back(name, config, None if ran is None else environment)
        if ran is None:
            message = f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds"
            ran = {
                "body": json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": message}),
                "failed": True,
                "duration_ms": timeout_s * 1000,
                "init_ms": None,
                "max_memory_mb": 0,
                "status": "timeout",
            }
        log_tail = _log_tail(request_id, config, ran, fresh)
        with self._lock:
            self.last_log[name] = base64.b64decode(log_tail).decode()
        headers = {
            "Content-Type": "application/json",
            "X-Amz-Executed-Version": str(config.get("Version", "$LATEST")),
            "X-Amz-Log-Result": log_tail,
        }
        if ran["failed"]:
            headers["X-Amz-Function-Error"] = "Unhandled"
        return 200, headers, ran["body"].encode()

    def _provisioned_concurrency(
        self, action: str, name: str, query: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        qualifier = query.get("Qualifier", "")
        with self._lock:
            current = self._provisioned.get(name)
            if action == "PutProvisionedConcurrencyConfig":
                requested = json.loads(body)["ProvisionedConcurrentExecutions"]
                current = {
                    "Qualifier": qualifier,
                    "RequestedProvisionedConcurrentExecutions": requested,
                    "AllocatedProvisionedConcurrentExecutions": 0,
                    "AvailableProvisionedConcurrentExecutions": 0,
                    "Status": "IN_PROGRESS",
                    "LastModified": "2026-12-03T12:00:00.000+0000",
                }
                self._provisioned[name] = current
                return 202, {"Content-Type": "application/json"}, json.dumps(current).encode()
            if current is None or current["Qualifier"] != qualifier:
                return _aws_error(
                    Answer(
                        404,
                        "ProvisionedConcurrencyConfigNotFoundException",
                        "No Provisioned Concurrency Config found for this function",
                    )
                )
            if action == "DeleteProvisionedConcurrencyConfig":
                del self._provisioned[name]
                return 204, {}, b""
            reply = dict(current)
            # Allocation finishes by the second look.
            requested = current["RequestedProvisionedConcurrentExecutions"]
            current.update(
                Status="READY",
                AllocatedProvisionedConcurrentExecutions=requested,
                AvailableProvisionedConcurrentExecutions=requested,
            )
        return 200, {"Content-Type": "application/json"}, json.dumps(reply).encode()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in _DROPPED_HEADERS
                }
                status, reply_headers, reply = front._answer(self.command, self.path, headers, body)
                self.send_response(status)
                for name, value in reply_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

            def log_message(self, format: str, *args: object) -> None:
                return None

        return Handler


def _action_of(method: str, path: str) -> tuple[str, str, dict[str, str]]:
    """The Lambda action a request is (``S3`` for anything else) and its function name."""
    parts = urlsplit(path)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    match = _FUNCTION_PATH.match(parts.path)
    if match is None:
        if parts.path.rstrip("/") == "/2015-03-31/functions" and method == "POST":
            return "CreateFunction", "", query
        return "S3", parts.path, query
    _, name, tail = match.groups()
    name = unquote(name)
    actions = {
        ("GET", None): "GetFunction",
        ("DELETE", None): "DeleteFunction",
        ("GET", "/configuration"): "GetFunctionConfiguration",
        ("PUT", "/configuration"): "UpdateFunctionConfiguration",
        ("PUT", "/code"): "UpdateFunctionCode",
        ("POST", "/invocations"): "Invoke",
        ("PUT", "/concurrency"): "PutFunctionConcurrency",
        ("DELETE", "/concurrency"): "DeleteFunctionConcurrency",
        ("GET", "/concurrency"): "GetFunctionConcurrency",
        ("POST", "/versions"): "PublishVersion",
        ("POST", "/aliases"): "CreateAlias",
        ("GET", "/aliases"): "GetAlias",
        ("PUT", "/aliases"): "UpdateAlias",
        ("DELETE", "/aliases"): "DeleteAlias",
        ("PUT", "/provisioned-concurrency"): "PutProvisionedConcurrencyConfig",
        ("GET", "/provisioned-concurrency"): "GetProvisionedConcurrencyConfig",
        ("DELETE", "/provisioned-concurrency"): "DeleteProvisionedConcurrencyConfig",
    }
    return actions.get((method, tail), f"{method} {tail}"), name, query


def _aws_error(answer: Answer) -> tuple[int, dict[str, str], bytes]:
    """A rest-json error as Lambda sends it: the code in ``x-amzn-ErrorType`` and the body."""
    body = {"Type": "User" if answer.status < 500 else "Service", "message": answer.message}
    body.update(answer.extra)
    headers = {
        "Content-Type": "application/json",
        "x-amzn-ErrorType": f"{answer.code}:",
        "x-amzn-RequestId": str(uuid.uuid4()),
        **answer.headers,
    }
    return answer.status, headers, json.dumps(body).encode()


def _log_tail(request_id: str, config: dict[str, Any], ran: dict[str, Any], fresh: bool) -> str:
    """The base64 last 4 KB of the run's log, ending in its REPORT line."""
    duration_ms = ran["duration_ms"]
    init_ms = ran["init_ms"] if fresh else None
    billed_ms = math.ceil(duration_ms + (init_ms or 0))
    fields = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {billed_ms} ms",
        f"Memory Size: {config['MemorySize']} MB",
        f"Max Memory Used: {math.ceil(ran['max_memory_mb'])} MB",
    ]
    if init_ms is not None:
        fields.append(f"Init Duration: {init_ms:.2f} ms")
    if ran.get("status"):
        fields.append(f"Status: {ran['status']}")
    version = config.get("Version", "$LATEST")
    log = (
        f"START RequestId: {request_id} Version: {version}\n"
        f"END RequestId: {request_id}\n" + "\t".join(fields) + "\t\n"
    )
    return base64.b64encode(log.encode()[-_LOG_TAIL_BYTES:]).decode()


@contextlib.contextmanager
def local_lambda(work_dir: Path | None = None) -> Iterator[LambdaFront]:
    """moto's server and a front before it, both stopped on exit."""
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work_dir.mkdir(parents=True, exist_ok=True)
        moto = stack.enter_context(MotoServer())
        yield stack.enter_context(LambdaFront(moto, work_dir))

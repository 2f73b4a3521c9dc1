"""A local fake of Azure's control plane and deployment endpoint, over real HTTP.

:class:`FakeAzure` serves the documented ARM wire for what the executor uses: resource groups,
storage accounts (``listKeys``, blob containers), ``checknameavailability``, Flex plans
(``serverfarms``), sites with ``functionAppConfig``, their ``functions`` listing,
``listkeys`` and ``appsettings/list``; writes answer 201 with ``Azure-AsyncOperation`` (or 202
with ``Location``, and an empty body for storage) that stay ``InProgress`` for a while; errors
are ARM's ``{"error": {"code", "message"}}``; a bearer token it did not issue is a 401.

Each site gets its own SCM (Kudu) server for one deploy (``POST /api/publish``, then
``GET /api/deployments/latest`` until status 4 or 3) and its own function host: publishing
extracts the zip and starts :mod:`tests.providers._azure_host` on the site's
``defaultHostName``, a real process running the generated app through the azure-functions
types. The site's app settings become that process's environment, as on Azure.

Tests script the rest: :meth:`FakeAzure.script` answers the next requests matching a
pattern as told (a 409 in progress, a 429 with ``Retry-After``, a 5xx).
"""

from __future__ import annotations

import contextlib
import http.server
import io
import itertools
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.processes import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
_HOST_READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class AccessToken:
    """What azure-identity's ``get_token`` returns."""

    token: str
    expires_on: int


class FakeCredential:
    """A credential whose tokens the fake accepts; counts what it was asked."""

    def __init__(self, platform: FakeAzure, *, lifetime_s: int = 3600) -> None:
        self._platform = platform
        self._lifetime_s = lifetime_s
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken(self._platform.issue_token(), int(time.time()) + self._lifetime_s)


@dataclass
class _Scripted:
    method: str
    pattern: re.Pattern[str]
    status: int
    body: Any
    headers: dict[str, str]
    times: int


@dataclass
class _Site:
    name: str
    body: dict[str, Any]
    settings: dict[str, str]
    host_port: int
    work_dir: Path
    key: str = ""
    keys_hidden_for: int = 0
    scm: _Scm | None = None
    process: subprocess.Popen[bytes] | None = None
    deployments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.host_port}"

    @property
    def key_file(self) -> Path:
        return self.work_dir / "key"

    @property
    def log_file(self) -> Path:
        return self.work_dir / "invocations.log"

    @property
    def ready_file(self) -> Path:
        return self.work_dir / "ready.json"

    @property
    def fault_file(self) -> Path:
        return self.work_dir / "fault"

    def functions(self) -> list[str]:
        if self.process is None or not self.ready_file.exists():
            return []
        names: list[str] = json.loads(self.ready_file.read_text())
        return names


class FakeAzure:
    """ARM for one subscription, on a free local port; use as a context manager."""

    def __init__(self, work_dir: Path, *, subscription_id: str = "sub-0001") -> None:
        self.subscription_id = subscription_id
        self.work_dir = work_dir
        #: Polls an async operation answers ``InProgress`` before ``Succeeded``.
        self.pending_polls = 1
        #: Keys listed as absent this many times after each publish.
        self.keys_hidden_after_publish = 1
        #: Names ``checknameavailability`` says are taken.
        self.taken_names: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self.groups: dict[str, dict[str, Any]] = {}
        self.storage: dict[str, dict[str, Any]] = {}
        self.containers: set[tuple[str, str]] = set()
        self.plans: dict[str, dict[str, Any]] = {}
        self.sites: dict[str, _Site] = {}
        self.storage_key = f"storagekey-{secrets.token_hex(16)}"
        #: Part of every token and function key this fake issues: what must never leak.
        self.token_secret = secrets.token_hex(12)
        self.key_secret = secrets.token_hex(12)
        self._tokens: set[str] = set()
        self._token_ids = itertools.count(1)
        self._operations: dict[str, dict[str, Any]] = {}
        self._scripted: list[_Scripted] = []
        self._lock = threading.RLock()
        self._server = _serve(self._handle)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeAzure:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for site in list(self.sites.values()):
            self._remove_site(site)
        self._server.shutdown()
        self._server.server_close()

    # -- what tests use ---------------------------------------------------------------

    def issue_token(self) -> str:
        with self._lock:
            token = f"arm-token-{next(self._token_ids)}-{self.token_secret}"
            self._tokens.add(token)
            return token

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def script(
        self,
        method: str,
        pattern: str,
        status: int,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests whose path matches ``pattern`` like this."""
        with self._lock:
            self._scripted.append(
                _Scripted(method, re.compile(pattern), status, body, headers or {}, times)
            )

    def count(self, method: str, pattern: str) -> int:
        with self._lock:
            return sum(1 for m, p in self.requests if m == method and re.search(pattern, p))

    def site(self, name: str) -> _Site:
        return self.sites[name]

    def rotate_key(self, name: str) -> None:
        site = self.sites[name]
        site.key = self._new_key()
        site.key_file.write_text(site.key)

    def _new_key(self) -> str:
        return f"fnkey-{secrets.token_hex(6)}-{self.key_secret}"

    def invocations(self, name: str) -> int:
        site = self.sites.get(name)
        if site is None or not site.log_file.exists():
            return 0
        return len(site.log_file.read_text().splitlines())

    @contextlib.contextmanager
    def host_failing(self, name: str) -> Iterator[None]:
        """The app's host answers a bare 500 inside the block."""
        fault = self.sites[name].fault_file
        fault.touch()
        try:
            yield
        finally:
            fault.unlink(missing_ok=True)

    # -- the wire ---------------------------------------------------------------------

    def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Answer:
        path = urlsplit(target).path
        with self._lock:
            self.requests.append((method, path))
            scripted = self._take_scripted(method, path)
        if scripted is not None:
            return scripted
        if headers.get("authorization", "").removeprefix("Bearer ") not in self._tokens:
            return _error(401, "InvalidAuthenticationToken", "The access token is invalid.")
        payload = json.loads(body) if body else None
        for route_method, route, handler in self._routes():
            match = route.fullmatch(path)
            if match and route_method == method:
                with self._lock:
                    answer: _Answer = handler(payload, **match.groupdict())
                    return answer
        return _error(404, "NotFound", f"no route for {method} {path}")

    def _routes(self) -> list[tuple[str, re.Pattern[str], Any]]:
        group = rf"/subscriptions/{self.subscription_id}/resource[gG]roups/(?P<group>[^/]+)"
        storage = rf"{group}/providers/Microsoft\.Storage/storageAccounts/(?P<account>[^/]+)"
        web = rf"{group}/providers/Microsoft\.Web"
        site = rf"{web}/sites/(?P<app>[^/]+)"
        table = [
            ("GET", group, self._get_group),
            ("PUT", group, self._put_group),
            ("GET", storage, self._get_storage),
            ("PUT", storage, self._put_storage),
            ("POST", rf"{storage}/listKeys", self._list_storage_keys),
            ("PUT", rf"{storage}/blobServices/default/containers/(?P<c>[^/]+)", self._put_c),
            ("DELETE", rf"{storage}/blobServices/default/containers/(?P<c>[^/]+)", self._del_c),
            (
                "POST",
                rf"/subscriptions/{self.subscription_id}/providers/Microsoft\.Web/"
                "checknameavailability",
                self._check_name,
            ),
            ("GET", rf"{web}/serverfarms/(?P<plan>[^/]+)", self._get_plan),
            ("PUT", rf"{web}/serverfarms/(?P<plan>[^/]+)", self._put_plan),
            ("DELETE", rf"{web}/serverfarms/(?P<plan>[^/]+)", self._delete_plan),
            ("GET", site, self._get_site),
            ("PUT", site, self._put_site),
            ("DELETE", site, self._delete_site),
            ("GET", rf"{site}/functions", self._list_functions),
            ("POST", rf"{site}/functions/(?P<fn>[^/]+)/listkeys", self._list_function_keys),
            ("POST", rf"{site}/config/appsettings/list", self._list_settings),
            ("GET", r"/operations/(?P<op>[^/]+)", self._get_operation),
        ]
        return [(m, re.compile(p), h) for m, p, h in table]

    def _take_scripted(self, method: str, path: str) -> _Answer | None:
        for scripted in self._scripted:
            if scripted.method == method and scripted.pattern.search(path):
                scripted.times -= 1
                if scripted.times <= 0:
                    self._scripted.remove(scripted)
                return _Answer(scripted.status, scripted.body, scripted.headers)
        return None

    def _async(self, resource: dict[str, Any] | None, status: int = 201) -> _Answer:
        """A write answered with an ``Azure-AsyncOperation`` to poll."""
        operation = secrets.token_hex(6)
        self._operations[operation] = {"left": self.pending_polls}
        headers = {"Azure-AsyncOperation": f"{self.url}/operations/{operation}", "Retry-After": "0"}
        return _Answer(status, resource, headers)

    def _get_operation(self, _: Any, op: str) -> _Answer:
        operation = self._operations.get(op)
        if operation is None:
            return _error(404, "NotFound", "no such operation")
        pending = operation["left"] > 0
        operation["left"] -= 1
        if operation.get("location"):
            # A Location poll: 202 until done, then the final status.
            return _Answer(202, None, {"Retry-After": "0"}) if pending else _Answer(200, None)
        if pending:
            return _Answer(200, {"status": "InProgress"}, {"Retry-After": "0"})
        return _Answer(200, {"status": "Succeeded"})

    def _get_group(self, _: Any, group: str) -> _Answer:
        found = self.groups.get(group.lower())
        return _Answer(200, found) if found else _error(404, "ResourceGroupNotFound", group)

    def _put_group(self, body: Any, group: str) -> _Answer:
        resource = {
            "id": f"/subscriptions/{self.subscription_id}/resourceGroups/{group}",
            "name": group,
            "location": body["location"],
            "properties": {"provisioningState": "Succeeded"},
        }
        created = group.lower() not in self.groups
        self.groups[group.lower()] = resource
        return _Answer(201 if created else 200, resource)

    def _get_storage(self, _: Any, group: str, account: str) -> _Answer:
        found = self.storage.get(account)
        return _Answer(200, found) if found else _error(404, "ResourceNotFound", account)

    def _put_storage(self, body: Any, group: str, account: str) -> _Answer:
        self.storage[account] = {
            "id": account,
            "name": account,
            "kind": body["kind"],
            "properties": {
                "provisioningState": "Succeeded",
                "primaryEndpoints": {"blob": f"https://{account}.blob.core.windows.net/"},
            },
        }
        # The storage RP's documented create: 202, an empty body, a Location to poll.
        operation = secrets.token_hex(6)
        self._operations[operation] = {"left": self.pending_polls, "location": True}
        return _Answer(202, None, {"Location": f"{self.url}/operations/{operation}"})

    def _list_storage_keys(self, _: Any, group: str, account: str) -> _Answer:
        if account not in self.storage:
            return _error(404, "ResourceNotFound", account)
        key = {"keyName": "key1", "value": self.storage_key, "permissions": "FULL"}
        return _Answer(200, {"keys": [key]})

    def _put_c(self, _: Any, group: str, account: str, c: str) -> _Answer:
        self.containers.add((account, c))
        return _Answer(201, {"name": c, "properties": {}})

    def _del_c(self, _: Any, group: str, account: str, c: str) -> _Answer:
        if (account, c) not in self.containers:
            return _Answer(204, None)
        self.containers.discard((account, c))
        return _Answer(200, None)

    def _check_name(self, body: Any) -> _Answer:
        taken = body["name"] in self.taken_names or body["name"] in self.sites
        if taken:
            return _Answer(200, {"nameAvailable": False, "reason": "AlreadyExists"})
        return _Answer(200, {"nameAvailable": True})

    def _get_plan(self, _: Any, group: str, plan: str) -> _Answer:
        found = self.plans.get(plan)
        if found is None:
            return _error(404, "ResourceNotFound", plan)
        sites = sum(
            1 for s in self.sites.values() if s.body["properties"]["serverFarmId"] == found["id"]
        )
        return _Answer(
            200, {**found, "properties": {**found["properties"], "numberOfSites": sites}}
        )

    def _put_plan(self, body: Any, group: str, plan: str) -> _Answer:
        resource = {
            "id": f"/subscriptions/{self.subscription_id}/resourceGroups/{group}/providers/"
            f"Microsoft.Web/serverfarms/{plan}",
            "name": plan,
            "kind": body["kind"],
            "sku": body["sku"],
            "properties": {"provisioningState": "Succeeded", "reserved": True},
        }
        self.plans[plan] = resource
        return self._async(resource)

    def _delete_plan(self, _: Any, group: str, plan: str) -> _Answer:
        return _Answer(200, None) if self.plans.pop(plan, None) else _Answer(204, None)

    def _get_site(self, _: Any, group: str, app: str) -> _Answer:
        site = self.sites.get(app)
        return _Answer(200, site.body) if site else _error(404, "ResourceNotFound", app)

    def _put_site(self, body: Any, group: str, app: str) -> _Answer:
        site = self.sites.get(app)
        properties = body["properties"]
        settings = {s["name"]: s["value"] for s in properties["siteConfig"]["appSettings"]}
        if site is None:
            work_dir = self.work_dir / app
            work_dir.mkdir(parents=True, exist_ok=True)
            site = _Site(app, {}, settings, free_port(), work_dir, key=self._new_key())
            site.key_file.write_text(site.key)
            site.scm = _Scm(self, site)
            self.sites[app] = site
        site.settings = settings
        assert site.scm is not None
        site.body = {
            "id": f"{group}/{app}",
            "name": app,
            "kind": body["kind"],
            "location": body["location"],
            "properties": {
                "state": "Running",
                "defaultHostName": site.host,
                "enabledHostNames": [site.host, site.scm.host],
                "hostNameSslStates": [
                    {"name": site.host, "hostType": "Standard"},
                    {"name": site.scm.host, "hostType": "Repository"},
                ],
                "serverFarmId": properties["serverFarmId"],
                "functionAppConfig": properties["functionAppConfig"],
                # ARM never returns app settings with the site.
                "siteConfig": {"appSettings": None},
            },
        }
        return self._async(site.body)

    def _delete_site(self, _: Any, group: str, app: str) -> _Answer:
        site = self.sites.pop(app, None)
        if site is None:
            return _Answer(204, None)
        self._remove_site(site)
        return _Answer(200, None)

    def _list_functions(self, _: Any, group: str, app: str) -> _Answer:
        site = self.sites.get(app)
        if site is None:
            return _error(404, "ResourceNotFound", app)
        value = [
            {"name": f"{app}/{fn}", "properties": {"language": "python"}} for fn in site.functions()
        ]
        return _Answer(200, {"value": value})

    def _list_function_keys(self, _: Any, group: str, app: str, fn: str) -> _Answer:
        site = self.sites.get(app)
        if site is None or fn not in site.functions():
            return _error(404, "ResourceNotFound", f"{app}/{fn}")
        if site.keys_hidden_for > 0:
            site.keys_hidden_for -= 1
            return _Answer(200, {})
        # The wire is flat, though the spec wraps it in "properties".
        return _Answer(200, {"default": site.key})

    def _list_settings(self, _: Any, group: str, app: str) -> _Answer:
        site = self.sites.get(app)
        if site is None:
            return _error(404, "ResourceNotFound", app)
        return _Answer(200, {"name": "appsettings", "properties": dict(site.settings)})

    # -- sites' processes -------------------------------------------------------------

    def publish(self, site: _Site, package: bytes) -> dict[str, Any]:
        deployment = {"id": secrets.token_hex(8), "status": 1, "complete": False, "status_text": ""}
        site.deployments.append(deployment)
        threading.Thread(target=self._deploy, args=(site, package, deployment), daemon=True).start()
        return deployment

    def _deploy(self, site: _Site, package: bytes, deployment: dict[str, Any]) -> None:
        app_dir = site.work_dir / f"app-{deployment['id']}"
        try:
            with zipfile.ZipFile(io.BytesIO(package)) as archive:
                archive.extractall(app_dir)
        except zipfile.BadZipFile:
            deployment.update(status=3, complete=True, status_text="the package is not a zip")
            return
        with self._lock:
            self._stop_host(site)
            site.ready_file.unlink(missing_ok=True)
            site.keys_hidden_for = self.keys_hidden_after_publish
        env = {**os.environ, **site.settings, "PYTHONPATH": str(ROOT)}
        site.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.providers._azure_host",
                "--app-dir",
                str(app_dir),
                "--port",
                str(site.host_port),
                "--key-file",
                str(site.key_file),
                "--log-file",
                str(site.log_file),
                "--ready-file",
                str(site.ready_file),
                "--fault-file",
                str(site.fault_file),
                "--max-in-flight",
                str(self._max_in_flight(site)),
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stderr=(site.work_dir / "host.log").open("ab"),
        )
        # Kudu's own wait for the host, in this thread: a test failure here would go unseen,
        # so the deadline ends the deployment as failed instead.
        deadline = time.monotonic() + _HOST_READY_TIMEOUT_S
        while not site.ready_file.exists() and time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                site.process.wait(timeout=0.02)
                break  # the host exited
        if site.ready_file.exists():
            deployment.update(status=4, complete=True, status_text="Deployment successful.")
        else:
            deployment.update(status=3, complete=True, status_text="the host failed to start")

    def _max_in_flight(self, site: _Site) -> int:
        # One instance taking one call at a time per allowed instance: this fake's scale model.
        scale = site.body["properties"]["functionAppConfig"]["scaleAndConcurrency"]
        return int(scale["maximumInstanceCount"])

    def _stop_host(self, site: _Site) -> None:
        if site.process is not None:
            stop_process(site.process)
            site.process = None

    def _remove_site(self, site: _Site) -> None:
        self._stop_host(site)
        if site.scm is not None:
            site.scm.close()
        shutil.rmtree(site.work_dir, ignore_errors=True)


class _Scm:
    """One site's Kudu: ``/api/publish`` and ``/api/deployments/latest``, bearer-checked."""

    def __init__(self, platform: FakeAzure, site: _Site) -> None:
        self._platform = platform
        self._site = site
        self._server = _serve(self._handle)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Answer:
        url = urlsplit(target)
        platform = self._platform
        with platform._lock:
            platform.requests.append((method, f"scm:{url.path}"))
            scripted = platform._take_scripted(method, f"scm:{url.path}")
            authorized = (
                headers.get("authorization", "").removeprefix("Bearer ") in platform._tokens
            )
        if scripted is not None:
            return scripted
        if not authorized:
            return _Answer(401, None)
        if method == "POST" and url.path == "/api/publish":
            if dict(parse_qsl(url.query)).get("RemoteBuild") not in ("true", "false"):
                return _Answer(400, None)
            deployment = platform.publish(self._site, body)
            location = f"http://{self.host}/api/deployments/{deployment['id']}"
            return _Answer(202, None, {"Location": location})
        if method == "GET" and url.path == "/api/deployments/latest":
            if not self._site.deployments:
                return _Answer(404, None)
            return _Answer(200, dict(self._site.deployments[-1]))
        return _Answer(404, None)


@dataclass(frozen=True)
class _Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def _error(status: int, code: str, message: str) -> _Answer:
    return _Answer(status, {"error": {"code": code, "message": message}})


def _serve(handle: Any) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            answer: _Answer = handle(self.command, self.path, headers, body)
            content = b"" if answer.body is None else json.dumps(answer.body).encode()
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            if content:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_PUT = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server

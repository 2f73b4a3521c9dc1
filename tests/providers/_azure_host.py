"""A local stand-in for the Azure Functions host: serves one generated app over real HTTP.

Run as ``python -m tests.providers._azure_host --app-dir D --port P --key-file K ...``. It
imports the app's ``function_app`` (the v2 model) from the extracted package, asks the
``azure-functions`` library's ``FunctionApp.get_functions()`` for its HTTP functions, and
turns each request into a real ``func.HttpRequest``, calls the registered function, and
writes its ``func.HttpResponse`` back: status, headers, mimetype, body.

What the host does around the function is this fake's model of the platform: the route is
``/api/<route>``, a function-level function needs its key in ``x-functions-key`` (or
``?code=``), else 401; over ``--max-in-flight`` calls at once it answers 429 with
``Retry-After``; while ``--fault-file`` exists it answers a bare 500, as a broken host does.
Every request for a function appends one line to ``--log-file`` (counted by tests). Once it
is listening it writes the function names to ``--ready-file``.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import sys
import threading
import traceback
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

THROTTLE_RETRY_AFTER_S = 1


def _load_app(app_dir: Path) -> func.FunctionApp:
    sys.path.insert(0, str(app_dir))
    import function_app  # type: ignore[import-not-found]

    apps = [value for value in vars(function_app).values() if isinstance(value, func.FunctionApp)]
    if len(apps) != 1:
        raise RuntimeError(f"function_app.py defines {len(apps)} FunctionApp objects, not 1")
    return apps[0]


class _Route:
    def __init__(self, function: object) -> None:
        trigger = function.get_trigger()  # type: ignore[attr-defined]
        self.name: str = function.get_function_name()  # type: ignore[attr-defined]
        self.call = function.get_user_function()  # type: ignore[attr-defined]
        self.route: str = trigger.route or self.name
        self.methods = {str(method.value) for method in (trigger.methods or [])}
        self.keyed = trigger.auth_level is not func.AuthLevel.ANONYMOUS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--app-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key-file", type=Path, required=True)
    parser.add_argument("--log-file", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--fault-file", type=Path, required=True)
    parser.add_argument("--max-in-flight", type=int, default=100)
    args = parser.parse_args()

    app = _load_app(args.app_dir)
    routes = {route.route: route for route in map(_Route, app.get_functions())}
    in_flight = threading.BoundedSemaphore(args.max_in_flight)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            self._serve()

        do_GET = do_PUT = do_DELETE = do_POST

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            route = (
                routes.get(url.path.removeprefix("/api/")) if url.path.startswith("/api/") else None
            )
            if route is None:
                return self._send(404, b"", "text/plain")
            fd = os.open(args.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, f"{self.command} {url.path}\n".encode())
            os.close(fd)
            if route.methods and self.command not in route.methods:
                return self._send(405, b"", "text/plain")
            params = dict(parse_qsl(url.query))
            if route.keyed:
                given = self.headers.get("x-functions-key") or params.get("code")
                if given != args.key_file.read_text().strip():
                    return self._send(401, b"", "text/plain")
            if args.fault_file.exists():
                return self._send(500, b"Internal Server Error", "text/plain")
            if not in_flight.acquire(blocking=False):
                return self._send(
                    429, b"", "text/plain", {"Retry-After": str(THROTTLE_RETRY_AFTER_S)}
                )
            try:
                self._call(route, url.path, params, body)
            finally:
                in_flight.release()

        def _call(self, route: _Route, path: str, params: dict[str, str], body: bytes) -> None:
            request = func.HttpRequest(
                method=self.command,
                url=f"http://{self.headers.get('Host', 'localhost')}{path}",
                headers=dict(self.headers.items()),
                params=params,
                route_params={},
                body=body,
            )
            try:
                response = route.call(request)
            except Exception:
                traceback.print_exc()
                return self._send(500, b"", "text/plain")
            content_type = response.mimetype or "text/plain"
            if response.charset:
                content_type += f"; charset={response.charset}"
            self._send(
                response.status_code, response.get_body(), content_type, dict(response.headers)
            )

        def _send(
            self,
            status: int,
            body: bytes,
            content_type: str,
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                if name.lower() not in ("content-length", "content-type"):
                    self.send_header(name, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *log_args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    ready = args.ready_file.with_suffix(".tmp")
    ready.write_text(json.dumps(sorted(route.name for route in routes.values())))
    ready.replace(args.ready_file)
    server.serve_forever()


if __name__ == "__main__":
    main()

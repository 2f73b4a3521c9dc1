"""Races between requests, driven in-process through ASGI so the test decides the order.

A request body is streamed from a generator that stops half-way until the test lets it go
on; the generator being asked for its second chunk proves the handler is already reading
the body, with no sleep.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from providers.reference_server import create_app

from ._support import config_header, result_json

pytestmark = pytest.mark.integration

_DEADLINE_S = 30.0
_WHOAMI = json.dumps({"job_id": 7, "args": list(json.dumps({"op": "whoami"}).encode())})


class _StalledBody:
    """An invoke body sent in two chunks; the second waits until `release` is set."""

    def __init__(self, body: str) -> None:
        self._halves = body[: len(body) // 2].encode(), body[len(body) // 2 :].encode()
        self.reading = asyncio.Event()
        self.release = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._halves[0]
        self.reading.set()
        await self.release.wait()
        yield self._halves[1]


def test_an_invoke_racing_a_delete_is_404_and_a_redeploy_runs_with_its_new_config(
    tmp_path: Path, function_id: str, probe_zip: bytes
) -> None:
    app = create_app(tmp_path / "data")
    base = f"/api/functions/{function_id}"

    async def deploy(client: httpx.AsyncClient, env_value: str) -> httpx.Response:
        headers = {"X-Blueprint-Config": config_header({"env_vars": {"A": env_value}})}
        return await client.put(base, content=probe_zip, headers=headers)

    async def main() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://server") as client,
        ):
            assert (await deploy(client, "old")).status_code == 200
            body = _StalledBody(_WHOAMI)
            racing = asyncio.ensure_future(client.post(f"{base}/invoke", content=body))
            await asyncio.wait_for(body.reading.wait(), _DEADLINE_S)
            assert (await client.delete(base)).status_code == 200
            body.release.set()
            raced = await asyncio.wait_for(racing, _DEADLINE_S)
            assert (await deploy(client, "new")).status_code == 200
            payload = _WHOAMI.encode()
            after = await client.post(f"{base}/invoke", content=payload, timeout=_DEADLINE_S)
            return raced, after

    raced, after = asyncio.run(main())

    assert raced.status_code == 404, raced.text
    assert raced.json()["code"] == "FUNCTION_NOT_FOUND"
    assert after.status_code == 200, after.text
    assert result_json(after)["env"]["A"] == "new"

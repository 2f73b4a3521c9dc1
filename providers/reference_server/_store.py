"""Persistent deployment state in the data dir, cached in memory.

Layout (everything the server writes or deletes stays under `data_dir`)::

    data_dir/
      functions/<id>/deployment.json   config, deployed_at, sizes (written once, fsynced)
      functions/<id>/stats.json        counters, rewritten lazily by `flush_stats`
      functions/<id>/code/             the extracted package; the bootstrap's cwd
      .staging/<random>/               a deploy being prepared; renamed into functions/
      .trash/<random>/                 a deleted function on its way out

A deploy becomes visible with a single `rename` of its staging folder, which fails when the
id already exists: two concurrent deploys of one id (even from two server processes) cannot
both win. Reads on the invoke path come from memory; counters reach disk in batches.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._errors import ApiError, ErrorCode
from ._models import FunctionConfig

__all__ = ["Deployment", "DeploymentStore", "already_deployed", "remove_tree", "rfc3339"]

_log = logging.getLogger(__name__)

_FUNCTIONS = "functions"
_STAGING = ".staging"
_TRASH = ".trash"
_RECORD = "deployment.json"
_STATS = "stats.json"
_CODE = "code"
_SAFE_DIR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def rfc3339(epoch_s: float) -> str:
    """Format a Unix time as RFC 3339 UTC with milliseconds."""
    moment = datetime.fromtimestamp(epoch_s, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Deployment:
    """One deployed function: its config, where its code lives, and its counters."""

    function_id: str
    config: FunctionConfig
    deployed_at_s: float
    binary_size_bytes: int
    cold_start_ms: int
    code_dir: Path
    total_invocations: int = 0
    last_invocation_s: float | None = None
    _stats_dirty: bool = field(default=False, repr=False)

    def record_invocation(self) -> None:
        """Count one invocation; it reaches disk at the next `flush_stats`."""
        self.total_invocations += 1
        self.last_invocation_s = time.time()
        self._stats_dirty = True


class DeploymentStore:
    """Deployments on disk under `data_dir`, with an in-memory index.

    Parameters
    ----------
    data_dir:
        Created when missing. Leftovers of interrupted deploys and deletes (staging and
        trash folders) are removed at start-up.
    """

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir.resolve()
        self._functions_dir = self._data_dir / _FUNCTIONS
        self._staging_dir = self._data_dir / _STAGING
        self._trash_dir = self._data_dir / _TRASH
        for folder in (self._functions_dir, self._staging_dir, self._trash_dir):
            folder.mkdir(parents=True, exist_ok=True)
        for leftovers in (self._staging_dir, self._trash_dir):
            for entry in leftovers.iterdir():
                remove_tree(entry)
        self._deployments: dict[str, Deployment] = {}
        for folder in sorted(self._functions_dir.iterdir()):
            deployment = self._load(folder)
            if deployment is not None:
                self._deployments[deployment.function_id] = deployment

    def get(self, function_id: str) -> Deployment | None:
        """The deployment of `function_id`, or None; no disk access."""
        return self._deployments.get(function_id)

    def deployments(self) -> list[Deployment]:
        """Every current deployment."""
        return list(self._deployments.values())

    def new_staging_dir(self) -> Path:
        """A fresh empty folder inside the data dir to prepare a deploy in."""
        staging = self._staging_dir / uuid.uuid4().hex
        staging.mkdir()
        return staging

    def commit(
        self,
        staging: Path,
        function_id: str,
        config: FunctionConfig,
        *,
        binary_size_bytes: int,
        cold_start_ms: int,
    ) -> Deployment:
        """Publish a prepared staging folder (holding `code/`) as `function_id`.

        Raises
        ------
        ApiError
            FUNCTION_EXISTS when the id is already deployed, also by a concurrent request.
        """
        deployed_at_s = time.time()
        record = {
            "function_id": function_id,
            "config": config.model_dump(),
            "deployed_at_s": deployed_at_s,
            "binary_size_bytes": binary_size_bytes,
            "cold_start_ms": cold_start_ms,
        }
        _write_json(staging / _RECORD, record, durable=True)
        target = self._functions_dir / function_id
        if function_id in self._deployments:
            raise already_deployed(function_id)
        try:
            # rename() of a folder fails when the target exists and is not empty, which
            # makes it the atomic "create if absent" of a deployment.
            staging.rename(target)
        except OSError as exc:
            if target.exists():
                raise already_deployed(function_id) from exc
            raise
        _fsync_dir(self._functions_dir)
        deployment = Deployment(
            function_id=function_id,
            config=config,
            deployed_at_s=deployed_at_s,
            binary_size_bytes=binary_size_bytes,
            cold_start_ms=cold_start_ms,
            code_dir=target / _CODE,
        )
        self._deployments[function_id] = deployment
        return deployment

    def detach(self, function_id: str) -> Path | None:
        """Forget `function_id` and move its folder to the trash in one rename.

        Returns
        -------
        Path | None
            The trashed folder, for the caller to remove off the event loop (see
            `remove_tree`), or None when the id is not deployed.
        """
        if self._deployments.pop(function_id, None) is None:
            return None
        trashed = self._trash_dir / f"{function_id}.{uuid.uuid4().hex}"
        try:
            (self._functions_dir / function_id).rename(trashed)
        except FileNotFoundError:
            return None
        return trashed

    def flush_stats(self) -> None:
        """Write the counters of every deployment invoked since the last flush."""
        for deployment in list(self._deployments.values()):
            if not deployment._stats_dirty:
                continue
            deployment._stats_dirty = False
            stats = {
                "total_invocations": deployment.total_invocations,
                "last_invocation_s": deployment.last_invocation_s,
            }
            # A concurrent DELETE may have moved the folder away: nothing to keep then.
            with contextlib.suppress(FileNotFoundError):
                _write_json(deployment.code_dir.parent / _STATS, stats, durable=False)

    def _load(self, folder: Path) -> Deployment | None:
        if _SAFE_DIR_NAME.fullmatch(folder.name) is None or not folder.is_dir():
            return None
        try:
            record: dict[str, Any] = json.loads((folder / _RECORD).read_text())
            stats: dict[str, Any] = {}
            with contextlib.suppress(FileNotFoundError):
                stats = json.loads((folder / _STATS).read_text())
            return Deployment(
                function_id=folder.name,
                config=FunctionConfig.model_validate(record["config"]),
                deployed_at_s=float(record["deployed_at_s"]),
                binary_size_bytes=int(record["binary_size_bytes"]),
                cold_start_ms=int(record["cold_start_ms"]),
                code_dir=folder / _CODE,
                total_invocations=int(stats.get("total_invocations", 0)),
                last_invocation_s=stats.get("last_invocation_s"),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Keep the folder for the operator to inspect; just do not serve it.
            _log.warning("skipping unreadable deployment %s: %s", folder.name, exc)
            return None


def remove_tree(path: Path) -> None:
    """Delete a staging or trash folder (blocking: run it in a worker thread)."""
    # rmtree does not follow symlinks, so even a hostile tree cannot make it delete outside.
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def already_deployed(function_id: str) -> ApiError:
    """The 409 refusal for a deploy of an id that exists."""
    return ApiError(
        ErrorCode.FUNCTION_EXISTS,
        f"function {function_id!r} is already deployed; DELETE it first",
        function_id=function_id,
    )


def _write_json(path: Path, payload: dict[str, Any], *, durable: bool) -> None:
    """Replace `path` atomically: readers see the old or the new file, never a torn one."""
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with partial.open("w") as sink:
        json.dump(payload, sink)
        if durable:
            sink.flush()
            os.fsync(sink.fileno())
    os.replace(partial, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

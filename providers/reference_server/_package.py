"""Safe intake of deploy packages: a size-capped streamed upload and a checked zip extraction.

A package is untrusted input. Sizes are enforced while bytes arrive (not after buffering),
the uncompressed total is checked against both the sizes the zip declares and the bytes
really written, and no entry may land outside the destination folder: `..` parts, absolute
names, backslashes, symlinks and device or fifo entries are all refused.
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

from ._errors import ApiError, ErrorCode

__all__ = ["BOOTSTRAP_NAME", "declared_length", "extract_package", "receive_upload"]

BOOTSTRAP_NAME = "bootstrap"
_COPY_CHUNK_BYTES = 1024 * 1024


def _too_large(limit_bytes: int, what: str) -> ApiError:
    return ApiError(
        ErrorCode.PACKAGE_TOO_LARGE,
        f"package {what} exceeds the limit of {limit_bytes} bytes",
        details={"limit_bytes": limit_bytes, "limit": what},
    )


def declared_length(content_length: str | None) -> int | None:
    """The body size a Content-Length header declares, or None when absent or malformed."""
    if content_length is None or not (content_length.isascii() and content_length.isdecimal()):
        return None
    return int(content_length)


async def receive_upload(
    chunks: AsyncIterator[bytes],
    destination: Path,
    *,
    content_length: str | None,
    max_bytes: int,
) -> int:
    """Stream an upload into `destination`, stopping as soon as it passes `max_bytes`.

    Parameters
    ----------
    chunks:
        The request body as it arrives (`request.stream()`).
    content_length:
        The raw Content-Length header: a declared size over the limit is refused before
        reading anything.

    Returns
    -------
    int
        The number of bytes received.

    Raises
    ------
    ApiError
        PACKAGE_TOO_LARGE (413) with the limit in details; INVALID_PACKAGE for an empty body.
    """
    declared = declared_length(content_length)
    if declared is not None and declared > max_bytes:
        raise _too_large(max_bytes, "upload")
    received = 0
    with destination.open("wb") as sink:
        async for chunk in chunks:
            received += len(chunk)
            if received > max_bytes:
                raise _too_large(max_bytes, "upload")
            sink.write(chunk)
    if received == 0:
        raise ApiError(ErrorCode.INVALID_PACKAGE, "package body is empty", details={})
    return received


def extract_package(
    archive: Path, destination: Path, *, max_uncompressed_bytes: int, max_entries: int
) -> None:
    """Extract the zip `archive` into the new folder `destination` and check `bootstrap`.

    Blocking (disk and CPU bound): call it from a worker thread. `destination` must not exist.
    Files keep an executable bit when the zip records one; `bootstrap` is always made
    executable, as the contract says.

    Raises
    ------
    ApiError
        INVALID_PACKAGE (not a zip, corrupt, duplicate entries), UNSAFE_PACKAGE_ENTRY
        (traversal, absolute path, symlink, special file), PACKAGE_TOO_LARGE (entry count or
        uncompressed size), MISSING_BOOTSTRAP (no regular file `bootstrap` at the root).
    """
    try:
        with zipfile.ZipFile(archive) as bundle:
            entries = bundle.infolist()
            _check_entries(entries, max_uncompressed_bytes, max_entries)
            destination.mkdir(mode=0o755)
            written = _Written(max_uncompressed_bytes)
            for info in entries:
                _extract_entry(bundle, info, destination, written)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise ApiError(
            ErrorCode.INVALID_PACKAGE,
            "package is not a valid zip archive",
            details={"reason": str(exc)},
        ) from exc
    bootstrap = destination / BOOTSTRAP_NAME
    try:
        mode = bootstrap.lstat().st_mode
    except FileNotFoundError:
        mode = 0
    if not stat.S_ISREG(mode):
        raise ApiError(
            ErrorCode.MISSING_BOOTSTRAP,
            "package must hold a regular file named 'bootstrap' at its root",
            details={},
        )
    bootstrap.chmod(0o755)


def _check_entries(entries: list[zipfile.ZipInfo], max_total_bytes: int, max_entries: int) -> None:
    if len(entries) > max_entries:
        raise ApiError(
            ErrorCode.PACKAGE_TOO_LARGE,
            f"package holds more than {max_entries} entries",
            details={"limit_entries": max_entries, "limit": "entries"},
        )
    declared = 0
    for info in entries:
        _safe_parts(info)
        declared += info.file_size
    if declared > max_total_bytes:
        raise _too_large(max_total_bytes, "uncompressed")


def _unsafe(name: str, reason: str) -> ApiError:
    return ApiError(
        ErrorCode.UNSAFE_PACKAGE_ENTRY,
        f"package entry {name!r} is refused: {reason}",
        details={"entry": name, "reason": reason},
    )


def _safe_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The entry's path parts, or a refusal when it could leave the destination."""
    name = info.filename
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise _unsafe(name, "symbolic link")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise _unsafe(name, "special file")
    if "\\" in name or "\0" in name:
        raise _unsafe(name, "backslash or NUL in name")
    if name.startswith("/"):
        raise _unsafe(name, "absolute path")
    parts = PurePosixPath(name).parts
    if not parts or any(part in ("..", ".") for part in parts) or ":" in parts[0]:
        raise _unsafe(name, "path traversal")
    return parts


class _Written:
    """Bytes really written so far, against the uncompressed limit."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.total_bytes = 0

    def add(self, count: int) -> None:
        self.total_bytes += count
        if self.total_bytes > self.limit_bytes:
            raise _too_large(self.limit_bytes, "uncompressed")


def _extract_entry(
    bundle: zipfile.ZipFile, info: zipfile.ZipInfo, destination: Path, written: _Written
) -> None:
    parts = _safe_parts(info)
    target = destination.joinpath(*parts)
    if info.is_dir():
        target.mkdir(mode=0o755, parents=True, exist_ok=True)
        return
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    executable = bool((info.external_attr >> 16) & 0o111)
    # O_EXCL refuses duplicate names; O_NOFOLLOW is belt and braces, as no symlink can exist
    # in a tree built only from checked entries.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(target, flags, 0o755 if executable else 0o644)
    except (FileExistsError, IsADirectoryError) as exc:
        raise ApiError(
            ErrorCode.INVALID_PACKAGE,
            f"package entry {info.filename!r} appears twice",
            details={"entry": info.filename, "reason": "duplicate"},
        ) from exc
    with os.fdopen(fd, "wb") as sink, bundle.open(info) as source:
        while chunk := source.read(_COPY_CHUNK_BYTES):
            # The declared sizes were already checked; this counts what really comes out.
            written.add(len(chunk))
            sink.write(chunk)

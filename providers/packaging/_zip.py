"""Reproducible zips: writing a package's entries, and checking a prebuilt one.

Entries are sorted and stamped with one fixed date, so the same inputs give the same bytes
(and the same hash) on every machine.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from providers.errors import InvalidConfig

__all__ = ["EXECUTABLE_MODE", "FILE_MODE", "Entry", "load_prebuilt", "write_zip"]

EXECUTABLE_MODE = 0o100755
FILE_MODE = 0o100644
# Zip's earliest representable date; a fixed stamp keeps builds byte-for-byte reproducible.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_UNIX_SYSTEM = 3


@dataclass(frozen=True, slots=True)
class Entry:
    """One file of a package: its bytes and its Unix mode."""

    data: bytes
    mode: int = FILE_MODE


def write_zip(entries: Mapping[str, Entry]) -> bytes:
    """The deflated zip of ``entries`` (name -> entry), reproducible byte for byte."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.create_system = _UNIX_SYSTEM
            info.external_attr = entries[name].mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name].data)
    return buffer.getvalue()


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


def _check_entry_name(name: str, path: str | Path) -> None:
    entry = PurePosixPath(name)
    if "\\" in name or entry.is_absolute() or ".." in entry.parts:
        raise InvalidConfig(f"package {path} has an unsafe entry {name!r}")

"""Each package's ``__all__`` lists exactly its public names, and each of them resolves."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package_name", ["dispatcher", "providers", "workers"])
def test_all_lists_every_public_name_and_each_resolves(package_name: str) -> None:
    package = importlib.import_module(package_name)
    exported = list(package.__all__)
    assert len(exported) == len(set(exported)), "a name is listed twice"
    for name in exported:
        assert getattr(package, name) is not None, name
    # Names the package defines (not helpers it imported from typing or the stdlib).
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_")
        and not isinstance(value, type(importlib))
        and str(getattr(value, "__module__", package_name)).split(".")[0] == package_name
    }
    assert public - {"TYPE_CHECKING", "annotations"} <= set(exported)


def test_providers_does_not_import_the_dispatcher_or_the_workers() -> None:
    import subprocess
    import sys

    code = (
        "import sys, providers, providers.reference_server; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dispatcher', 'workers')); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""

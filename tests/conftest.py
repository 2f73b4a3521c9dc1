"""Fixtures for every test: no test may see (or use) real cloud credentials."""

from __future__ import annotations

import os

import pytest

_CREDENTIAL_PREFIXES = ("AWS_", "GOOGLE_", "AZURE_", "DIGITALOCEAN_")


@pytest.fixture(autouse=True)
def _clean_cloud_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove cloud credential variables, so no test reaches a real account by accident."""
    for name in list(os.environ):
        if name.startswith(_CREDENTIAL_PREFIXES):
            monkeypatch.delenv(name)

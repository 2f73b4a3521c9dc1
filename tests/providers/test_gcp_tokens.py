"""google-auth's real token flows, as the gcp executor uses them, against the local platform.

The service-account file names the platform's token endpoint, so google-auth signs its grant
assertions and posts them there, as it would to Google's; the platform issues an access token
for a ``scope`` and a signed ID token for a ``target_audience``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from textwrap import dedent

import pytest
from google.auth import jwt

from providers.errors import AuthError
from providers.gcp import GoogleTokens
from tests.providers._gcp_platform import GcpPlatform, generate_rsa_key

ROOT = Path(__file__).resolve().parents[2]
AUDIENCE = "https://blueprint-job-1-abc123-ew.a.run.app"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcpPlatform]:
    with GcpPlatform(tmp_path_factory.mktemp("gcp-tokens")) as platform:
        yield platform


def test_an_access_token_comes_from_the_service_account_and_expires_in_an_hour(
    platform: GcpPlatform,
) -> None:
    token, expiry = GoogleTokens(credentials_file=platform.service_account_file).access_token()

    assert token in platform.issued_tokens()
    assert isinstance(expiry, datetime)
    # google-auth's expiry is naive UTC.
    remaining = expiry.replace(tzinfo=UTC) - datetime.now(UTC)
    assert timedelta(minutes=50) < remaining <= timedelta(hours=1)


def test_an_id_token_is_for_the_audience_asked_and_signed_by_the_platform(
    platform: GcpPlatform,
) -> None:
    tokens = GoogleTokens(credentials_file=platform.service_account_file)
    grants = platform.token_grants["id"]

    token, expiry = tokens.id_token(AUDIENCE)

    claims = jwt.decode(token, verify=False)
    assert claims["aud"] == AUDIENCE
    assert claims["email"] == platform.service_account_email
    assert expiry is not None
    assert platform.token_grants["id"] == grants + 1


def test_user_credentials_in_a_file_are_refused_with_the_way_out(tmp_path: Path) -> None:
    user_file = tmp_path / "adc.json"
    user_file.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "id",
                "client_secret": "user-secret-value",
                "refresh_token": "user-refresh-token",
            }
        )
    )
    tokens = GoogleTokens(credentials_file=user_file)

    for fetch in (tokens.access_token, lambda: tokens.id_token(AUDIENCE)):
        with pytest.raises(AuthError) as caught:
            fetch()
        assert "'authorized_user' credentials, not a service account" in caught.value.message
        assert "impersonate_service_account" in caught.value.message
        assert "user-secret-value" not in caught.value.message


def test_a_missing_credentials_file_is_an_auth_error(tmp_path: Path) -> None:
    with pytest.raises(AuthError, match="cannot read the credentials file"):
        GoogleTokens(credentials_file=tmp_path / "nowhere.json").access_token()


def test_a_grant_the_server_refuses_is_an_auth_error_naming_only_its_type(
    platform: GcpPlatform, tmp_path: Path
) -> None:
    forged = json.loads(platform.service_account_file.read_text())
    # A key the platform does not know: its signature check fails.
    forged["private_key"], _ = generate_rsa_key()
    forged_file = tmp_path / "forged.json"
    forged_file.write_text(json.dumps(forged))

    with pytest.raises(AuthError) as caught:
        GoogleTokens(credentials_file=forged_file).access_token()

    assert caught.value.message == "cannot get an access token: google-auth raised RefreshError"


def test_without_any_credentials_the_error_says_where_they_come_from(tmp_path: Path) -> None:
    # In a process of its own: google-auth reads the metadata server's address at import, and
    # here it must be a closed port on this machine, never the real one.
    code = dedent(
        """
        from providers.errors import AuthError
        from providers.gcp import GoogleTokens

        for fetch in (GoogleTokens().access_token, lambda: GoogleTokens().id_token("https://a")):
            try:
                fetch()
            except AuthError as error:
                print(error.message)
        """
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "GCE_METADATA_HOST": "127.0.0.1:9",
        "GCE_METADATA_IP": "127.0.0.1:9",
        "GCE_METADATA_DETECT_RETRIES": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )

    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0, done.stderr
    assert [line.split(":")[0] for line in lines] == [
        "cannot get an access token",
        "cannot get an ID token",
    ]
    assert all("no Google credentials found" in line for line in lines)


def test_the_repr_names_the_file_and_nothing_read_from_it(platform: GcpPlatform) -> None:
    tokens = GoogleTokens(credentials_file=platform.service_account_file)
    tokens.access_token()

    assert repr(tokens) == (
        f"GoogleTokens(credentials_file={platform.service_account_file!r}, "
        "impersonate_service_account=None)"
    )

"""Google tokens for the GCP executor: an access token for the admin API, ID tokens to invoke.

The Cloud Functions v2 API takes an OAuth access token with the ``cloud-platform`` scope; an
authenticated 2nd gen function takes a Google-signed **ID token** whose audience is its
``serviceConfig.uri`` (an access token there is refused with 401). :class:`GoogleTokens`
fetches both with google-auth and hands them to :mod:`providers._auth`'s flows as their
sources, which cache each token until shortly before its expiry, fetch it once for many
threads and once more after a 401. This module only fetches: it caches nothing itself.

Where the credentials come from, in order:

- ``impersonate_service_account``: the base credentials (below) sign as that service account
  through the IAM Credentials API. The base identity needs ``roles/iam.serviceAccountTokenCreator``
  on it. This is how user credentials (``gcloud auth application-default login``), which
  cannot mint ID tokens, invoke functions.
- ``credentials_file``: a ``service_account`` or ``impersonated_service_account`` JSON file
  (other types are refused: google-auth warns against loading a file of unknown type).
- Application Default Credentials: ``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's ADC file, then
  the metadata server (Compute Engine, Cloud Run, GKE).

google-auth is imported on the first fetch, never at import time, so ``import providers``
works without the ``gcp`` extra. Its errors become :class:`~providers.errors.AuthError`
naming the error type and what to do, never its text (which may quote a server's reply).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from providers._auth import Credential
from providers.errors import AuthError

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.auth.transport import Request

__all__ = ["CLOUD_PLATFORM_SCOPE", "GoogleTokens", "TokenProvider"]

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_PROVIDER = "gcp"
_SERVICE_ACCOUNT_FILE_TYPES = ("service_account", "impersonated_service_account")
_USER_CREDENTIALS_HINT = (
    "for user credentials, which cannot mint ID tokens, leave credentials_file unset and set "
    "impersonate_service_account to a service account you may create tokens for "
    "(roles/iam.serviceAccountTokenCreator)"
)


class TokenProvider(Protocol):
    """Where a :class:`~providers.gcp.CloudFunctionExecutor` gets its two kinds of token.

    Each method goes to the network and returns a fresh token with its expiry; the executor's
    auth flows cache them.
    """

    def access_token(self) -> Credential:
        """An OAuth access token with the ``cloud-platform`` scope, for the admin API."""
        ...

    def id_token(self, audience: str) -> Credential:
        """A Google-signed ID token for ``audience`` (a function's ``serviceConfig.uri``)."""
        ...


class GoogleTokens:
    """Access and ID tokens from google-auth (:class:`TokenProvider`).

    Nothing is read or fetched before the first token is asked for.

    Parameters
    ----------
    credentials_file:
        A service-account (or impersonated service-account) JSON file; Application Default
        Credentials when None.
    impersonate_service_account:
        The email of a service account to act as, from the base credentials.
    request_factory:
        Builds google-auth's HTTP transport (``google.auth.transport.requests.Request`` by
        default); one is built on first use and shared.
    """

    def __init__(
        self,
        *,
        credentials_file: str | Path | None = None,
        impersonate_service_account: str | None = None,
        request_factory: Callable[[], Request] | None = None,
    ) -> None:
        self._credentials_file = None if credentials_file is None else Path(credentials_file)
        self._impersonate = impersonate_service_account
        self._request_factory = request_factory
        self._lock = threading.Lock()
        self._request: Request | None = None
        self._admin: Credentials | None = None

    def __repr__(self) -> str:
        return (
            f"GoogleTokens(credentials_file={self._credentials_file!r}, "
            f"impersonate_service_account={self._impersonate!r})"
        )

    def access_token(self) -> Credential:
        with _google_auth_errors("an access token"):
            credentials = self._admin_credentials()
            credentials.refresh(self._transport())
            return _token_of(credentials)

    def id_token(self, audience: str) -> Credential:
        with _google_auth_errors("an ID token"):
            credentials = self._id_token_credentials(audience)
            credentials.refresh(self._transport())
            return _token_of(credentials)

    def _transport(self) -> Request:
        with self._lock:
            if self._request is None:
                if self._request_factory is None:
                    import google.auth.transport.requests

                    self._request_factory = google.auth.transport.requests.Request
                self._request = self._request_factory()
            return self._request

    def _admin_credentials(self) -> Credentials:
        # Kept: google-auth credentials are reusable, and an impersonated one holds its source.
        with self._lock:
            if self._admin is None:
                base = self._base_credentials()
                self._admin = base if self._impersonate is None else self._impersonated(base)
            return self._admin

    def _base_credentials(self) -> Credentials:
        if self._credentials_file is not None:
            return _access_credentials_from_file(self._credentials_file)
        import google.auth

        credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
        return credentials

    def _impersonated(self, base: Credentials) -> Credentials:
        from google.auth import impersonated_credentials

        return impersonated_credentials.Credentials(
            source_credentials=base,
            target_principal=self._impersonate,
            target_scopes=[CLOUD_PLATFORM_SCOPE],
        )

    def _id_token_credentials(self, audience: str) -> Credentials:
        if self._impersonate is not None:
            from google.auth import impersonated_credentials

            return impersonated_credentials.IDTokenCredentials(
                target_credentials=self._admin_credentials(),
                target_audience=audience,
                include_email=True,
            )
        if self._credentials_file is not None:
            return _id_token_credentials_from_file(self._credentials_file, audience)
        import google.oauth2.id_token

        # GOOGLE_APPLICATION_CREDENTIALS (a service account), else the metadata server.
        credentials: Credentials = google.oauth2.id_token.fetch_id_token_credentials(
            audience, request=self._transport()
        )
        return credentials


def _service_account_info(path: Path) -> dict[str, Any]:
    """The file's JSON, when it holds a (possibly impersonated) service account.

    Loaded by type, as google-auth asks of files from outside: user credentials
    (``authorized_user``) and external-account configurations are refused here.
    """
    try:
        info: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise AuthError(
            f"cannot read the credentials file {path}: {type(error).__name__}", provider=_PROVIDER
        ) from None
    kind = info.get("type") if isinstance(info, dict) else None
    if kind not in _SERVICE_ACCOUNT_FILE_TYPES:
        raise AuthError(
            f"the credentials file {path} holds {kind!r} credentials, not a service account; "
            f"{_USER_CREDENTIALS_HINT}",
            provider=_PROVIDER,
        )
    return info


def _access_credentials_from_file(path: Path) -> Credentials:
    info = _service_account_info(path)
    if info["type"] == "service_account":
        from google.oauth2 import service_account

        return service_account.Credentials.from_service_account_info(
            info, scopes=[CLOUD_PLATFORM_SCOPE]
        )
    from google.auth import impersonated_credentials

    credentials: Credentials = (
        impersonated_credentials.Credentials.from_impersonated_service_account_info(
            info, scopes=[CLOUD_PLATFORM_SCOPE]
        )
    )
    return credentials


def _id_token_credentials_from_file(path: Path, audience: str) -> Credentials:
    info = _service_account_info(path)
    if info["type"] == "service_account":
        from google.oauth2 import service_account

        return service_account.IDTokenCredentials.from_service_account_info(
            info, target_audience=audience
        )
    from google.auth import impersonated_credentials

    target = impersonated_credentials.Credentials.from_impersonated_service_account_info(info)
    return impersonated_credentials.IDTokenCredentials(
        target_credentials=target, target_audience=audience, include_email=True
    )


def _token_of(credentials: Credentials) -> Credential:
    token = credentials.token
    if not isinstance(token, str) or not token:
        raise AuthError("google-auth returned no token", provider=_PROVIDER)
    # google-auth's expiry is a naive UTC datetime, which _auth reads as such.
    return token, credentials.expiry


@contextmanager
def _google_auth_errors(what: str) -> Iterator[None]:
    """Turn google-auth's errors into AuthError naming their type, not their text."""
    import google.auth.exceptions

    try:
        yield
    except google.auth.exceptions.DefaultCredentialsError as error:
        raise AuthError(
            f"cannot get {what}: no Google credentials found (set GOOGLE_APPLICATION_CREDENTIALS, "
            "run `gcloud auth application-default login` with impersonate_service_account, or "
            "run on Google Cloud)",
            provider=_PROVIDER,
        ) from error
    except google.auth.exceptions.GoogleAuthError as error:
        raise AuthError(
            f"cannot get {what}: google-auth raised {type(error).__name__}", provider=_PROVIDER
        ) from error

"""Who may call the gateway: API keys (a setting, or a mounted Secret re-read when it
changes) and, optionally, JWTs from an OIDC issuer.

Keys are held only as SHA-256 digests and every presented key is compared with every
digest in constant time (:func:`hmac.compare_digest`), so neither timing nor memory
gives a key away; logs name a key by a short digest prefix, never the key. With no
key and no issuer configured the gateway is open, as before.

Routes declare what they need with :data:`Caller` (mutating and costly endpoints)
or get it from the app for reads when ``auth_reads`` is on (``app.py``). The FastAPI
security schemes make both visible in the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

import httpx
import jwt
import structlog
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from vroom_common.errors import DependencyUnavailable, PermissionDenied, Unauthenticated
from vroom_gateway.settings import GatewaySettings, api_key_problem

log = structlog.get_logger(__name__)

#: How often a changed key file may be re-read (a stat per request is cheap; a re-read
#: per request is not needed: Kubernetes refreshes mounted Secrets within a minute).
KEY_FILE_CHECK_S: Final = 1.0

#: What a 401 offers the client (RFC 6750).
CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="vroom-forecast"'}

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API key (or, with OIDC configured, a JWT) as a bearer token.",
)
_api_key = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey", description="An API key."
)


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: ``key:<digest prefix>``, ``sub:<subject>``, or anonymous
    (auth off). ``id`` keys per-client rate limits and appears in logs."""

    id: str
    authenticated: bool


ANONYMOUS: Final = Principal("anonymous", authenticated=False)


def read_key_source(path: Path) -> list[str]:
    """Keys in ``path``: a file (one per line, ``#`` comments) or a directory whose every
    regular file holds one key (a Kubernetes Secret volume; its ``..data`` links are
    skipped)."""
    if path.is_dir():
        texts = [
            entry.read_text()
            for entry in sorted(path.iterdir())
            if not entry.name.startswith(".") and entry.is_file()
        ]
        keys = [text.strip() for text in texts]
    else:
        keys = [line.strip() for line in path.read_text().splitlines()]
    keys = [key for key in keys if key and not key.startswith("#")]
    for index, key in enumerate(keys, start=1):
        problem = api_key_problem(key)
        if problem:
            raise ValueError(f"{path}: key #{index} {problem}")
    return keys


def _fingerprint(path: Path) -> tuple[float, ...]:
    """Changes whenever the keys may have: a file's mtime, or a directory's entries'."""
    if path.is_dir():
        return tuple(entry.stat().st_mtime for entry in sorted(path.iterdir()))
    return (path.stat().st_mtime,)


class KeyRing:
    """The accepted API keys as digests: those of the setting plus those of the key
    file, which is re-read when it changes (an unreadable or invalid file keeps the
    last good keys and is logged)."""

    def __init__(self, keys: list[str], path: Path | None) -> None:
        self._fixed = [digest(key) for key in keys]
        self._path = path
        self._from_file: list[bytes] = []
        self._seen: tuple[float, ...] | None = None
        self._checked = 0.0
        if path is not None:
            self._from_file = [digest(key) for key in read_key_source(path)]
            self._seen = _fingerprint(path)
            self._checked = time.monotonic()

    @property
    def configured(self) -> bool:
        return bool(self._fixed) or self._path is not None

    def _refresh(self) -> None:
        if self._path is None or time.monotonic() - self._checked < KEY_FILE_CHECK_S:
            return
        self._checked = time.monotonic()
        try:
            fingerprint = _fingerprint(self._path)
            if fingerprint == self._seen:
                return
            self._from_file = [digest(key) for key in read_key_source(self._path)]
            self._seen = fingerprint
        except (OSError, ValueError) as error:
            log.warning("api keys not reloaded, the last good keys stay", error=str(error))
            return
        log.info("api keys reloaded", path=str(self._path), keys=len(self._from_file))

    def match(self, presented: str) -> str | None:
        """The matching key's fingerprint (12 hex digits of its digest), or None. Every
        digest is compared, so the time taken does not depend on which one matches."""
        self._refresh()
        candidate = digest(presented)
        found: bytes | None = None
        for known in (*self._fixed, *self._from_file):
            if hmac.compare_digest(candidate, known):
                found = known
        return found.hex()[:12] if found is not None else None


class OidcVerifier:
    """JWTs signed by one issuer's keys (JWKS, fetched and cached by PyJWT's client),
    with that issuer, the configured audience and an expiry."""

    ALGORITHMS: Final = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]

    def __init__(self, issuer: str, audience: str, jwks_url: str) -> None:
        self.issuer = issuer
        self.audience = audience or None
        self._jwks_url = jwks_url
        self._client: jwt.PyJWKClient | None = None
        self._lock = asyncio.Lock()

    async def _jwks(self) -> jwt.PyJWKClient:
        async with self._lock:
            if self._client is None:
                url = self._jwks_url or await self._discover()
                self._client = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)
            return self._client

    async def _discover(self) -> str:
        url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                response = await client.get(url)
                response.raise_for_status()
                jwks_uri = response.json()["jwks_uri"]
        except (httpx.HTTPError, ValueError, KeyError) as error:
            raise DependencyUnavailable(
                "OIDC issuer", f"no jwks_uri from {url}: {error}"
            ) from error
        return str(jwks_uri)

    async def verify(self, token: str) -> Principal:
        client = await self._jwks()
        try:
            signing_key = await asyncio.to_thread(client.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError as error:
            raise DependencyUnavailable("OIDC issuer", f"JWKS unreachable: {error}") from error
        except jwt.PyJWTError as error:
            raise PermissionDenied(f"the token is not valid: {error}") from error
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                signing_key.key,
                algorithms=self.ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.PyJWTError as error:
            raise PermissionDenied(f"the token is not valid: {error}") from error
        return Principal(f"sub:{claims['sub']}", authenticated=True)


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


class Authenticator:
    """Decides who a request comes from, for the routes that need it."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.keys = KeyRing(
            [key.get_secret_value() for key in settings.api_keys], settings.api_keys_file
        )
        self.oidc = (
            OidcVerifier(settings.oidc_issuer, settings.oidc_audience, settings.oidc_jwks_url)
            if settings.oidc_issuer
            else None
        )

    @property
    def enabled(self) -> bool:
        return self.keys.configured or self.oidc is not None

    async def authenticate(self, bearer: str | None, api_key: str | None) -> Principal:
        """The caller; 401 when credentials are missing, 403 when they are wrong."""
        if not self.enabled:
            return ANONYMOUS
        presented = bearer or api_key
        if not presented:
            raise Unauthenticated(
                "credentials required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                headers=CHALLENGE,
            )
        if bearer and self.oidc is not None and _looks_like_jwt(bearer):
            return await self.oidc.verify(bearer)
        fingerprint = self.keys.match(presented)
        if fingerprint is None:
            raise PermissionDenied("the API key is not valid")
        return Principal(f"key:{fingerprint}", authenticated=True)


async def authenticate(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """The dependency: the request's caller (anonymous when auth is off)."""
    authenticator: Authenticator = request.app.state.resources.authenticator
    principal = await authenticator.authenticate(
        bearer.credentials if bearer is not None else None, api_key
    )
    if principal.authenticated:
        structlog.contextvars.bind_contextvars(caller=principal.id)
    return principal


#: Routes that mutate or cost: ``caller: Caller`` (or ``dependencies=[Depends(authenticate)]``).
Caller = Annotated[Principal, Depends(authenticate)]

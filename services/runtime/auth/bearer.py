"""Checking an OAuth 2.0 bearer access token (a signed JWT) against the issuer's published keys.

A token is accepted when its signature verifies with a key of the issuer's JWKS under an allowed
asymmetric algorithm, and its claims say it is for us and still valid:

- ``iss`` is exactly the configured issuer;
- ``aud`` names the configured audience. ``azp`` alone is not enough: it says which client asked
  for the token, not which service it was meant for, and a token another service of the same
  provider was given must not open intake. The provider adds the audience (Keycloak: an audience
  mapper on each client system, see ``deploy/oidc/lienthong-realm.json``);
- ``exp`` has not passed and ``nbf``/``iat`` are not in the future, by the injected clock, within a
  small leeway for clock skew;
- the client is named by ``azp`` (Keycloak, OpenID Connect) or else ``client_id`` (RFC 9068).

The issuer's discovery document gives the JWKS address; both are fetched with httpx and cached. A
token signed with a key id the cache does not know makes it fetch the JWKS again (at most once per
``refetch_interval``), so a key rotation at the provider is followed without a restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx
from joserfc import jwt
from joserfc.errors import ClaimError, ExpiredTokenError, InvalidKeyIdError, JoseError, MissingClaimError
from joserfc.jwk import KeySet

# Asymmetric only: a symmetric algorithm would let anyone holding the public key forge tokens.
ALLOWED_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
DEFAULT_LEEWAY_S: Final = 30
MAX_TOKEN_LENGTH: Final = 16 * 1024  # a header no client sends legitimately; refused before parsing


class TokenRejected(Exception):
    """The token is missing, malformed, wrongly signed, expired or not for us (HTTP 401).

    ``reason`` is one sentence for the caller; it never repeats the token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProviderUnavailable(Exception):
    """The issuer's discovery document or keys could not be fetched (HTTP 503: try again later)."""


@dataclass(frozen=True)
class VerifiedToken:
    """What a valid token says about its bearer."""

    client_id: str
    subject: str | None
    claims: Mapping[str, Any]


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or :class:`TokenRejected`."""
    if not authorization or not authorization.strip():
        raise TokenRejected("this request needs an access token: send Authorization: Bearer <token>")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenRejected("the Authorization header must be 'Bearer <token>'")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenRejected("the access token is too long")
    return token.strip()


class JwksCache:
    """The issuer's signing keys, fetched on first use and again when a token names an unknown key."""

    def __init__(
        self,
        issuer: str,
        *,
        refetch_interval: float = 10.0,
        timeout: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.refetch_interval = refetch_interval
        self.timeout = timeout
        self._monotonic = monotonic
        self._transport = transport
        self._jwks_uri: str | None = None
        self._keys: KeySet | None = None
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def keys(self) -> KeySet:
        """The cached keys (fetched now if there are none yet)."""
        if self._keys is None:
            await self.refresh(force=True)
        assert self._keys is not None
        return self._keys

    async def refresh(self, *, force: bool = False) -> bool:
        """Fetch the keys again unless they were fetched less than ``refetch_interval`` ago (a flood
        of tokens with made-up key ids must not become a flood of requests to the provider); whether
        they were fetched."""
        async with self._lock:
            now = self._monotonic()
            if not force and self._fetched_at is not None and now - self._fetched_at < self.refetch_interval:
                return False
            try:
                async with httpx.AsyncClient(timeout=self.timeout, transport=self._transport) as http:
                    if self._jwks_uri is None:
                        self._jwks_uri = await self._discover(http)
                    answer = await http.get(self._jwks_uri)
                    answer.raise_for_status()
                    keys = KeySet.import_key_set(answer.json())
            except (httpx.HTTPError, ValueError, KeyError, JoseError) as error:
                raise ProviderUnavailable(
                    f"the keys of {self.issuer} could not be fetched: {error}"
                ) from error
            self._keys, self._fetched_at = keys, now
            return True

    async def _discover(self, http: httpx.AsyncClient) -> str:
        answer = await http.get(f"{self.issuer}/.well-known/openid-configuration")
        answer.raise_for_status()
        document = answer.json()
        if str(document.get("issuer", "")).rstrip("/") != self.issuer:
            raise ValueError(f"its discovery document names another issuer ({document.get('issuer')!r})")
        return str(document["jwks_uri"])


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BearerVerifier:
    """Validates access tokens of one issuer for one audience (see the module's docstring)."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        now: Callable[[], datetime] = _utc_now,
        leeway_s: int = DEFAULT_LEEWAY_S,
        keys: JwksCache | None = None,
        algorithms: tuple[str, ...] = ALLOWED_ALGORITHMS,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.leeway_s = leeway_s
        self.keys = keys or JwksCache(self.issuer)
        self._now = now
        self._algorithms = [a for a in algorithms if a in ALLOWED_ALGORITHMS]

    async def verify(self, token: str) -> VerifiedToken:
        """The token's client, or :class:`TokenRejected` (:class:`ProviderUnavailable` when the keys
        cannot be fetched)."""
        keys = await self.keys.keys()
        try:
            decoded = self._decode(token, keys)
        except InvalidKeyIdError:
            # Signed with a key we have not seen: perhaps the provider rotated its keys.
            if not await self.keys.refresh():
                raise TokenRejected(
                    "the access token is signed with a key its issuer does not publish"
                ) from None
            try:
                decoded = self._decode(token, await self.keys.keys())
            except InvalidKeyIdError:
                raise TokenRejected(
                    "the access token is signed with a key its issuer does not publish"
                ) from None
        return self.check_claims(decoded.claims)

    def _decode(self, token: str, keys: KeySet) -> jwt.Token:
        try:
            return jwt.decode(token, keys, algorithms=self._algorithms)
        except InvalidKeyIdError:
            raise
        except (JoseError, ValueError, TypeError) as error:
            raise TokenRejected("the access token is not a validly signed JWT") from error

    def check_claims(self, claims: Mapping[str, Any]) -> VerifiedToken:
        """Issuer, audience and validity period of already verified claims (public for the bench)."""
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self._now().timestamp()),
            leeway=self.leeway_s,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
        )
        try:
            registry.validate(dict(claims))
        except ExpiredTokenError:
            raise TokenRejected(
                "the access token has expired: get a new one from the token endpoint"
            ) from None
        except MissingClaimError as error:
            raise TokenRejected(f"the access token lacks the {error.claim} claim") from None
        except ClaimError as error:
            raise TokenRejected(f"the access token's {error.claim} claim is not acceptable here") from None
        client_id = claims.get("azp") or claims.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            raise TokenRejected("the access token names no client (azp or client_id)")
        subject = claims.get("sub")
        return VerifiedToken(client_id, subject if isinstance(subject, str) else None, claims)

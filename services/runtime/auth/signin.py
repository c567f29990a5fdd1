"""Staff sign-in for a server-rendered page: OpenID Connect authorization code with PKCE (S256),
a signed session cookie, roles, and CSRF protection of the page's forms.

The flow is authlib's Starlette client (``/auth/login`` → the provider's login form →
``/auth/callback``): authlib keeps the ``state``, the PKCE ``code_verifier`` and the ``nonce`` in the
session while the person signs in, checks the ``state`` on the way back, exchanges the code and
validates the ID token (signature against the provider's JWKS, ``iss``, ``aud`` = our client id,
``nonce``, expiry). The access token is then checked like any staff token (a
:class:`~services.runtime.auth.bearer.BearerVerifier` for the audience
:data:`~services.runtime.auth.staff.STAFF_AUDIENCE`) and must name the same subject; its roles are
the person's roles. (While the person is at the provider, the state, verifier and nonce are in the
signed session cookie of their own browser: the verifier is of no use without the code, which the
provider sends only to our redirect URI.)

The session keeps only what the page needs: the subject, the user name, the roles and when the
session ends (the provider's own session length as its token answer gives it, at most
:data:`MAX_SESSION_S`), plus the per-session CSRF token. No token is kept. The cookie is signed
(Starlette's ``SessionMiddleware``, itsdangerous), ``HttpOnly``, ``SameSite=Lax`` and ``Secure``
(see :func:`cookie_is_secure` for the one exception).

A state-changing form carries the session's CSRF token in a hidden field (:data:`CSRF_FIELD`), and a
POST is also refused when the browser says it comes from another site (``Origin``,
``Sec-Fetch-Site``).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

from authlib.deprecate import AuthlibDeprecationWarning  # type: ignore[import-untyped]

with warnings.catch_warnings():
    # authlib 1.9 warns at import that it would rather drive httpx2 than httpx; the project's HTTP
    # client is httpx, which authlib still supports. Unfiltered, the warning is a bare line on
    # stderr ahead of the service's JSON log lines.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.starlette_client import OAuth, OAuthError  # type: ignore[import-untyped]
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.middleware.sessions import SessionMiddleware

from services.runtime.auth.bearer import BearerVerifier, ProviderUnavailable, TokenRejected, bearer_token
from services.runtime.auth.staff import STAFF_AUDIENCE, Role, Staff, roles_from_claims

log = logging.getLogger(__name__)

SESSION_COOKIE: Final = "lienthong_staff"
CSRF_FIELD: Final = "csrf_token"
MAX_SESSION_S: Final = 8 * 3600  # one working day, whatever the provider says
MIN_SECRET_CHARS: Final = 32
SWITCH: Final = "LIENTHONG_STAFF_SIGN_IN=off (or LIENTHONG_INSECURE_DEV=1) for development only"
_PROVIDER: Final = "staff"

Clock = Callable[[], datetime]


class SignInNotConfigured(Exception):
    """Why a service with staff sign-in refuses to start, as one sentence."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cookie_is_secure(public_url: str) -> bool:
    """Whether the session cookie gets ``Secure``: always, except for a page served over plain http on
    the loopback interface (the local stack, the tests). There a ``Secure`` cookie would never come
    back to the page, and the traffic never leaves the machine. Plain http anywhere else is refused
    (:func:`resolve`): the cookie would travel in the clear."""
    parts = urlsplit(public_url)
    return not (parts.scheme == "http" and _is_loopback(parts.hostname))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass(frozen=True)
class SignInConfig:
    """The page's sign-in, once checked (:func:`resolve`)."""

    issuer: str
    client_id: str
    public_url: str
    secret: str
    secure_cookie: bool


def resolve(
    service: str,
    *,
    sign_in: str,
    issuer: str | None,
    client_id: str,
    public_url: str,
    secret_file: Path | None,
    insecure_dev: bool,
) -> SignInConfig | None:
    """The sign-in to use, or None when it is off (said loudly in the log). Raises
    :class:`SignInNotConfigured` when sign-in is on and cannot work: no issuer (unless the
    development switch is on), an unreadable or short secret file, a public URL in plain http off
    the loopback interface."""
    issuer = (issuer or "").strip().rstrip("/") or None
    if sign_in == "off" or (issuer is None and insecure_dev):
        why = (
            "LIENTHONG_STAFF_SIGN_IN=off"
            if sign_in == "off"
            else "no LIENTHONG_OIDC_ISSUER, LIENTHONG_INSECURE_DEV"
        )
        log.warning(
            "%s: staff sign-in is OFF (%s): anyone who reaches the page may read it and replay;"
            " for development only, never in a deployment",
            service,
            why,
        )
        return None
    if issuer is None:
        raise SignInNotConfigured(
            f"{service} refuses to start: staff sign-in needs the OpenID Connect provider"
            f" (LIENTHONG_OIDC_ISSUER); set it, or {SWITCH}."
        )
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SignInNotConfigured(
            f"{service} refuses to start: LIENTHONG_PUBLIC_URL ({public_url!r}) is not an http(s) URL."
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise SignInNotConfigured(
            f"{service} refuses to start: LIENTHONG_PUBLIC_URL ({public_url}) is plain http off the loopback"
            " interface, and the session cookie would travel in the clear; serve the page over https."
        )
    if secret_file is not None:
        try:
            secret = secret_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise SignInNotConfigured(
                f"{service} refuses to start: its session secret (LIENTHONG_SESSION_SECRET_FILE) cannot be"
                f" read: {error}."
            ) from None
        if len(secret) < MIN_SECRET_CHARS:
            raise SignInNotConfigured(
                f"{service} refuses to start: its session secret ({secret_file.name},"
                f" LIENTHONG_SESSION_SECRET_FILE) is shorter than {MIN_SECRET_CHARS} characters."
            )
    else:
        secret = secrets.token_urlsafe(48)
        log.warning(
            "%s: no LIENTHONG_SESSION_SECRET_FILE: the session cookies are signed with a random secret of"
            " this process; sessions do not survive a restart and replicas do not share them",
            service,
        )
    return SignInConfig(
        issuer, client_id, public_url.rstrip("/"), secret, secure_cookie=cookie_is_secure(public_url)
    )


def _safe_next(value: str | None, default: str) -> str:
    """A local path to return to after signing in (never another site: ``//host`` or a scheme)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value


class StaffAccess:
    """Who is asking, and whether they may: the session (or a bearer token), roles, CSRF.

    With ``config`` None sign-in is off: every request is let through and :meth:`staff` is None."""

    def __init__(
        self,
        config: SignInConfig | None,
        *,
        home: str = "/",
        now: Clock = _utc_now,
        verifier: BearerVerifier | None = None,
    ) -> None:
        self.config = config
        self.home = home
        self._now = now
        self.verifier = verifier or (BearerVerifier(config.issuer, STAFF_AUDIENCE) if config else None)
        self._oauth: OAuth | None = None
        if config is not None:
            self._oauth = OAuth()
            self._oauth.register(
                _PROVIDER,
                client_id=config.client_id,
                server_metadata_url=f"{config.issuer}/.well-known/openid-configuration",
                client_kwargs={
                    "scope": "openid profile",
                    "code_challenge_method": "S256",
                    "token_endpoint_auth_method": "none",  # a public client: PKCE instead of a secret
                },
            )

    @property
    def enabled(self) -> bool:
        return self.config is not None

    def install(self, app: FastAPI) -> None:
        """The session middleware and the ``/auth`` routes (nothing when sign-in is off)."""
        if self.config is None:
            return
        app.add_middleware(
            SessionMiddleware,
            secret_key=self.config.secret,
            session_cookie=SESSION_COOKIE,
            max_age=MAX_SESSION_S,
            # Lax: sent on the provider's redirect back to /auth/callback, never on a cross-site POST.
            same_site="lax",
            https_only=self.config.secure_cookie,
        )  # its cookie is always HttpOnly
        app.include_router(self._routes())

    # --- who is asking ---

    def session_staff(self, request: Request) -> Staff | None:
        """The signed-in person of this session, if its sign-in has not expired."""
        if self.config is None:
            return None
        data = request.session.get("staff")
        if not isinstance(data, Mapping):
            return None
        if float(data.get("exp", 0)) <= self._now().timestamp():
            request.session.pop("staff", None)
            return None
        return Staff(
            subject=str(data["sub"]),
            username=data.get("username"),
            roles=roles_from_claims({"roles": data.get("roles", [])}),
        )

    async def bearer_staff(self, request: Request) -> Staff | None:
        """The staff member an ``Authorization: Bearer`` header names (None without the header)."""
        header = request.headers.get("authorization")
        if header is None or self.verifier is None:
            return None
        try:
            return Staff.from_token(await self.verifier.verify(bearer_token(header)))
        except TokenRejected as rejected:
            raise HTTPException(401, rejected.reason, headers={"WWW-Authenticate": "Bearer"}) from None
        except ProviderUnavailable as down:
            raise HTTPException(503, f"the sign-in provider cannot be reached: {down}") from None

    def csrf_token(self, request: Request) -> str:
        """This session's CSRF token (made on first use)."""
        if self.config is None:
            return ""
        token = request.session.get("csrf")
        if not isinstance(token, str) or not token:
            token = secrets.token_urlsafe(32)
            request.session["csrf"] = token
        return token

    @staticmethod
    def require_role(staff: Staff, role: Role, what: str) -> Staff:
        """``staff``, or 403 with one sentence saying which role is missing."""
        if not staff.may(role):
            have = ", ".join(sorted(r.value for r in staff.roles)) or "none"
            who = staff.username or staff.subject
            raise HTTPException(403, f"{what} needs the {role.value} role, and {who} has {have}.")
        return staff

    def api(self, role: Role) -> Callable[[Request], Awaitable[Staff | None]]:
        """A dependency for an API route: the session or a bearer token with ``role``; 401 without either."""

        async def dependency(request: Request) -> Staff | None:
            if self.config is None:
                return None
            staff = await self.bearer_staff(request) or self.session_staff(request)
            if staff is None:
                raise HTTPException(
                    401,
                    "this API needs a staff sign-in: send Authorization: Bearer <access token> or sign in at"
                    " /auth/login",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            return self.require_role(staff, role, "this API")

        return dependency

    def page(self, role: Role) -> Callable[[Request], Awaitable[Staff | None]]:
        """A dependency for a page: without a session, a redirect to sign in (then back here)."""

        async def dependency(request: Request) -> Staff | None:
            if self.config is None:
                return None
            staff = self.session_staff(request)
            if staff is None:
                path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                login = "/auth/login?" + urlencode({"next": path})
                raise HTTPException(303, "sign in first", headers={"Location": login})
            return self.require_role(staff, role, "this page")

        return dependency

    def check_same_origin(self, request: Request) -> None:
        """403 when the browser says this POST comes from another site (works with sign-in off too)."""
        fetch_site = request.headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
            raise HTTPException(
                403, f"this form may only be sent from the page itself, not from another site ({fetch_site})."
            )
        origin = request.headers.get("origin")
        if origin is None:
            return
        allowed = {_origin(str(request.base_url))}
        if self.config is not None:
            allowed.add(_origin(self.config.public_url))
        if origin.lower() not in allowed:
            raise HTTPException(403, f"this form may only be sent from the page itself, not from {origin}.")

    def check_form(self, request: Request, form: Mapping[str, Any]) -> None:
        """403 unless the POST is same-origin and carries this session's CSRF token."""
        self.check_same_origin(request)
        if self.config is None:
            return
        sent = form.get(CSRF_FIELD)
        expected = request.session.get("csrf")
        if not isinstance(sent, str) or not isinstance(expected, str) or not expected:
            raise HTTPException(403, "this form lacks its CSRF token: reload the page and send it again.")
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            raise HTTPException(403, "this form's CSRF token is not this session's: reload the page.")

    # --- the sign-in routes ---

    def _client(self) -> Any:
        assert self._oauth is not None
        return self._oauth.create_client(_PROVIDER)

    def _routes(self) -> APIRouter:
        config = self.config
        assert config is not None
        router = APIRouter(prefix="/auth", tags=["staff sign-in"], include_in_schema=False)

        @router.get("/login")
        async def login(request: Request, next: str | None = None) -> Any:
            """Send the person to the provider's sign-in (code flow with PKCE S256, state and nonce)."""
            request.session["next"] = _safe_next(next, self.home)
            try:
                return await self._client().authorize_redirect(request, f"{config.public_url}/auth/callback")
            except Exception as error:  # discovery failed: the provider is down or misnamed
                raise HTTPException(503, f"the sign-in provider cannot be reached: {error}") from None

        @router.get("/callback")
        async def callback(request: Request) -> RedirectResponse:
            """Back from the provider: check it all, then keep who signed in (not their tokens)."""
            back = _safe_next(request.session.get("next"), self.home)
            try:
                token = await self._client().authorize_access_token(request)
            except OAuthError as error:
                raise HTTPException(
                    401, f"the sign-in did not succeed: {error.description or error.error}."
                ) from None
            userinfo = token.get("userinfo")
            if not userinfo or "access_token" not in token:
                raise HTTPException(401, "the sign-in did not succeed: the provider returned no ID token.")
            assert self.verifier is not None
            try:
                verified = await self.verifier.verify(token["access_token"])
            except TokenRejected as rejected:
                raise HTTPException(401, f"the sign-in did not succeed: {rejected.reason}") from None
            except ProviderUnavailable as down:
                raise HTTPException(503, f"the sign-in provider cannot be reached: {down}") from None
            if verified.subject != userinfo.get("sub"):
                raise HTTPException(401, "the sign-in did not succeed: the tokens name different people.")
            staff = Staff.from_token(verified)
            lasts = token.get("refresh_expires_in") or token.get("expires_in") or MAX_SESSION_S
            ends = self._now().timestamp() + min(float(lasts), MAX_SESSION_S)
            request.session.clear()  # a fresh session, and a fresh CSRF token, for whoever signed in
            request.session["staff"] = {
                "sub": staff.subject,
                "username": staff.username,
                "roles": sorted(r.value for r in staff.roles),
                "exp": int(ends),
            }
            self.csrf_token(request)
            log.info("staff %s signed in (roles %s)", staff.subject, ", ".join(sorted(staff.roles)) or "none")
            return RedirectResponse(back, status_code=303)

        @router.post("/logout")
        async def logout(request: Request) -> RedirectResponse:
            """End the session here, then at the provider."""
            self.check_form(request, await request.form())
            request.session.clear()
            try:
                metadata = await self._client().load_server_metadata()
                end = metadata.get("end_session_endpoint")
            except Exception:  # the provider is down: signed out here all the same
                end = None
            if not end:
                return RedirectResponse(self.home, status_code=303)
            query = urlencode(
                {"client_id": config.client_id, "post_logout_redirect_uri": config.public_url + self.home}
            )
            return RedirectResponse(f"{end}?{query}", status_code=303)

        @router.get("/me")
        async def me(request: Request) -> JSONResponse:
            """Who this session is signed in as (401 when nobody)."""
            staff = self.session_staff(request)
            if staff is None:
                return JSONResponse({"detail": "nobody is signed in in this session"}, status_code=401)
            return JSONResponse(
                {"subject": staff.subject, "username": staff.username, "roles": sorted(staff.roles)}
            )

        return router

"""Tokens for the CLI's operator commands: a person signed in on the command line, or a script.

Where a token comes from, first found first:

1. ``LIENTHONG_TOKEN``: an access token given as is (a script that got one elsewhere);
2. ``LIENTHONG_OIDC_CLIENT_ID`` and ``LIENTHONG_OIDC_CLIENT_SECRET``: the client credentials grant, for
   scripts (the ``operations-automation`` client, whose service account has the ``operator`` role);
3. the token ``lienthong login`` stored: the device authorization grant (RFC 8628) of the public
   ``lienthong-cli`` client — the command prints a URL and a code, the person signs in with the
   provider in any browser, the command polls until the provider answers. The token (and its refresh
   token, used when the access token expired) is kept in the user's config directory
   (``$XDG_CONFIG_HOME/lienthong/token.json``, else ``~/.config/…``), readable by its owner only;
   ``lienthong logout`` removes it.

The provider is ``LIENTHONG_OIDC_ISSUER``. A token is then verified like any staff token
(:class:`~services.runtime.auth.bearer.BearerVerifier`, audience
:data:`~services.runtime.auth.staff.STAFF_AUDIENCE`) and its roles checked by the command.

The grants are made with httpx directly: each is one or two form POSTs to endpoints the provider's
discovery document names, and authlib (the other candidate) has no client for the device
authorization request; the token itself is verified with joserfc (via the bearer verifier).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

CLI_CLIENT_ID: Final = "lienthong-cli"
DEVICE_GRANT: Final = "urn:ietf:params:oauth:grant-type:device_code"
_TIMEOUT_S: Final = 15.0
_EARLY_S: Final = 30  # an access token this close to its expiry is refreshed first


class CliTokenSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIENTHONG_", extra="ignore")

    oidc_issuer: str | None = Field(default=None, description="The OpenID Connect provider (issuer URL).")
    oidc_client_id: str | None = Field(default=None, description="A script's client (client credentials).")
    oidc_client_secret: str | None = Field(default=None, description="That client's secret.")
    token: str | None = Field(default=None, description="An access token given as is.")


class TokenError(Exception):
    """No token could be had (the message is one sentence an operator acts on)."""


@dataclass(frozen=True)
class DeviceCode:
    """What the person needs to sign in: where, and the code to type there."""

    verification_uri: str
    verification_uri_complete: str | None
    user_code: str
    device_code: str
    interval_s: float
    expires_in_s: float


@dataclass(frozen=True)
class FoundToken:
    token: str
    source: str  # "LIENTHONG_TOKEN", "client credentials (<client>)", "lienthong login"


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "lienthong"


def token_file(environ: Mapping[str, str] | None = None) -> Path:
    return config_dir(environ) / "token.json"


def endpoints(issuer: str, *, http: httpx.Client | None = None) -> dict[str, Any]:
    """The provider's discovery document."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        with _client(http) as client:
            answer = client.get(url)
            answer.raise_for_status()
            document: dict[str, Any] = answer.json()
    except (httpx.HTTPError, ValueError) as error:
        raise TokenError(
            f"the provider at {issuer} does not answer its discovery document: {error}"
        ) from None
    return document


def client_credentials(
    issuer: str, client_id: str, secret: str, *, http: httpx.Client | None = None
) -> dict[str, Any]:
    """A script's token: the client credentials grant."""
    return _token_request(
        issuer, {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}, http
    )


def start_device_login(
    issuer: str, client_id: str = CLI_CLIENT_ID, *, http: httpx.Client | None = None
) -> DeviceCode:
    """Ask the provider for a device code (RFC 8628 §3.1)."""
    url = endpoints(issuer, http=http).get("device_authorization_endpoint")
    if not isinstance(url, str):
        raise TokenError(f"the provider at {issuer} offers no device authorization (no device sign-in)")
    try:
        with _client(http) as client:
            answer = client.post(url, data={"client_id": client_id, "scope": "openid"})
    except httpx.HTTPError as error:
        raise TokenError(f"the provider's device authorization endpoint does not answer: {error}") from None
    if answer.status_code != 200:
        raise TokenError(f"the provider refused the device sign-in of {client_id}: {_oauth_error(answer)}")
    body = answer.json()
    return DeviceCode(
        verification_uri=body["verification_uri"],
        verification_uri_complete=body.get("verification_uri_complete"),
        user_code=body["user_code"],
        device_code=body["device_code"],
        interval_s=float(body.get("interval", 5)),
        expires_in_s=float(body.get("expires_in", 600)),
    )


def finish_device_login(
    issuer: str,
    code: DeviceCode,
    client_id: str = CLI_CLIENT_ID,
    *,
    http: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll the token endpoint until the person signed in (RFC 8628 §3.4–3.5): the token answer."""
    token_url = _token_endpoint(issuer, http)
    interval, deadline = code.interval_s, clock() + code.expires_in_s
    form = {"grant_type": DEVICE_GRANT, "device_code": code.device_code, "client_id": client_id}
    while clock() < deadline:
        sleep(interval)
        try:
            with _client(http) as client:
                answer = client.post(token_url, data=form)
        except httpx.HTTPError:
            continue  # the provider blinked: ask again at the next interval
        if answer.status_code == 200:
            token: dict[str, Any] = answer.json()
            return token
        error = _error_code(answer)
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += 5
            continue
        raise TokenError(f"the sign-in did not complete: {_oauth_error(answer)}")
    raise TokenError("the sign-in code expired before anyone used it: run `lienthong login` again")


def store(
    issuer: str, answer: Mapping[str, Any], path: Path | None = None, *, now: float | None = None
) -> Path:
    """Keep a token answer for later commands, readable by its owner only."""
    path = path or token_file()
    moment = time.time() if now is None else now
    saved = {
        "issuer": issuer.rstrip("/"),
        "client_id": CLI_CLIENT_ID,
        "access_token": answer["access_token"],
        "expires_at": moment + float(answer.get("expires_in", 60)),
        "refresh_token": answer.get("refresh_token"),
    }
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(saved, out)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def forget(path: Path | None = None) -> bool:
    """Remove the stored token; whether there was one."""
    path = path or token_file()
    if not path.exists():
        return False
    path.unlink()
    return True


def stored_token(
    issuer: str, path: Path | None = None, *, http: httpx.Client | None = None, now: float | None = None
) -> str | None:
    """The stored token of ``issuer``, refreshed when it expired (and stored again); None when there
    is none, it belongs to another provider, or it expired and cannot be refreshed."""
    path = path or token_file()
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("issuer") != issuer.rstrip("/"):
        return None
    moment = time.time() if now is None else now
    if moment < float(saved.get("expires_at", 0)) - _EARLY_S:
        return str(saved["access_token"])
    refresh = saved.get("refresh_token")
    if not refresh:
        return None
    try:
        answer = _token_request(
            issuer,
            {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": CLI_CLIENT_ID},
            http,
        )
    except TokenError:
        return None
    store(issuer, answer, path, now=moment)
    return str(answer["access_token"])


def find_token(
    settings: CliTokenSettings | None = None,
    issuer: str | None = None,
    *,
    path: Path | None = None,
    http: httpx.Client | None = None,
) -> FoundToken | None:
    """The token the CLI acts with (see the module's docstring for the order), or None."""
    settings = settings or CliTokenSettings()
    if settings.token:
        return FoundToken(settings.token.strip(), "LIENTHONG_TOKEN")
    issuer = issuer or settings.oidc_issuer
    if settings.oidc_client_id and settings.oidc_client_secret:
        if not issuer:
            raise TokenError("LIENTHONG_OIDC_CLIENT_ID is set but not LIENTHONG_OIDC_ISSUER: which provider?")
        answer = client_credentials(issuer, settings.oidc_client_id, settings.oidc_client_secret, http=http)
        return FoundToken(str(answer["access_token"]), f"client credentials ({settings.oidc_client_id})")
    if issuer:
        token = stored_token(issuer, path, http=http)
        if token is not None:
            return FoundToken(token, "lienthong login")
    return None


def _client(http: httpx.Client | None) -> contextlib.AbstractContextManager[httpx.Client]:
    """The caller's client (left open), or a new one closed after use."""
    return contextlib.nullcontext(http) if http is not None else httpx.Client(timeout=_TIMEOUT_S)


def _token_endpoint(issuer: str, http: httpx.Client | None) -> str:
    url = endpoints(issuer, http=http).get("token_endpoint")
    if not isinstance(url, str):
        raise TokenError(f"the provider at {issuer} names no token endpoint")
    return url


def _token_request(issuer: str, form: dict[str, str], http: httpx.Client | None) -> dict[str, Any]:
    url = _token_endpoint(issuer, http)
    try:
        with _client(http) as client:
            answer = client.post(url, data=form)
    except httpx.HTTPError as error:
        raise TokenError(f"the provider's token endpoint does not answer: {error}") from None
    if answer.status_code != 200:
        raise TokenError(f"the provider refused the token ({form['grant_type']}): {_oauth_error(answer)}")
    body: dict[str, Any] = answer.json()
    return body


def _error_code(answer: httpx.Response) -> str | None:
    try:
        code = answer.json().get("error")
    except ValueError:
        return None
    return code if isinstance(code, str) else None


def _oauth_error(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return f"HTTP {answer.status_code}"
    if not isinstance(body, dict):
        return f"HTTP {answer.status_code}"
    description = body.get("error_description")
    return f"{body.get('error', 'error')}" + (f" ({description})" if description else "")

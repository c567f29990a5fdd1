"""Who may do what on the local stack: the same OpenID Connect provider as the tests (Keycloak, the realm
of ``deploy/oidc/lienthong-realm.json``), its demo client systems and staff users.

With sign-in on (``lienthong run``'s default) intake requires the client systems' access tokens
(``LIENTHONG_OIDC_ISSUER`` and the client map ``deploy/oidc/clients.yaml``), the supervision page signs
staff in (authorization code + PKCE, client ``supervision-page``) with a session secret kept in an
owner-only file of the stack, and the stack's own sample traffic hands its dossiers in as the counter
application or the online portal (client credentials). ``--no-sign-in`` turns the checks off for
development, and the run says so on every summary; it is never silent.

Every secret here is a demo value of the realm file, for a stack on 127.0.0.1: never a deployment's.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[3]
REALM_FILE = REPO_ROOT / "deploy" / "oidc" / "lienthong-realm.json"
CLIENTS_FILE = REPO_ROOT / "deploy" / "oidc" / "clients.yaml"
STAFF_CLIENT_ID = "supervision-page"
# The client system each channel's sample dossiers are handed in by (clients.yaml maps them).
CHANNEL_CLIENTS: Mapping[str, str] = {"counter": "counter-app", "online": "online-portal"}
# The stack's own reader of the tracker (its summary, the bank paying notices): a service account.
STACK_READER = "operations-automation"


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    roles: tuple[str, ...]


def demo_users(realm_file: Path = REALM_FILE) -> list[DemoUser]:
    """The people of the realm file (demo passwords: their only use is a local stack)."""
    realm = json.loads(realm_file.read_text(encoding="utf-8"))
    users = []
    for user in realm.get("users", []):
        if user.get("serviceAccountClientId"):
            continue
        password = next((c["value"] for c in user.get("credentials", []) if c.get("type") == "password"), "")
        users.append(DemoUser(user["username"], password, tuple(user.get("realmRoles", []))))
    return users


def demo_client_secrets(realm_file: Path = REALM_FILE) -> dict[str, str]:
    """The confidential clients' secrets of the realm file (demo values)."""
    realm = json.loads(realm_file.read_text(encoding="utf-8"))
    return {
        c["clientId"]: c["secret"] for c in realm["clients"] if not c.get("publicClient") and "secret" in c
    }


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable and writable by its owner only (made so before any byte)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.chmod(path, 0o600)  # an older file of other modes is narrowed too
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(text)


def private_secret(path: Path) -> str:
    """The random secret kept in ``path`` (drawn, owner-only, on first use)."""
    if path.exists():
        kept = path.read_text(encoding="utf-8").strip()
        if kept:
            os.chmod(path, 0o600)
            return kept
    secret = secrets.token_urlsafe(32)
    write_private(path, secret + "\n")
    return secret


@dataclass(frozen=True)
class SignIn:
    """The provider a stack signs in with: its issuer, and the demo secrets of its client systems."""

    issuer: str
    client_secrets: Mapping[str, str] = field(default_factory=demo_client_secrets, repr=False)
    clients_file: Path = CLIENTS_FILE

    def credentials(self, client_id: str) -> ClientCredentials:
        return ClientCredentials(self.issuer, client_id, self.client_secrets[client_id])


class ClientCredentials:
    """Access tokens of one client system (OAuth 2.0 client credentials), fetched when needed and kept
    until shortly before they expire."""

    def __init__(self, issuer: str, client_id: str, secret: str, *, margin_s: float = 30.0) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._secret = secret
        self._margin_s = margin_s
        self._token: str | None = None
        self._expires = 0.0
        self._endpoint: str | None = None

    async def token(self, http: httpx.AsyncClient) -> str:
        if self._token is not None and time.monotonic() < self._expires:
            return self._token
        if self._endpoint is None:
            found = await http.get(f"{self.issuer}/.well-known/openid-configuration")
            found.raise_for_status()
            self._endpoint = str(found.json()["token_endpoint"])
        answer = await http.post(
            self._endpoint,
            data={"grant_type": "client_credentials"},
            auth=(self.client_id, self._secret),
        )
        answer.raise_for_status()
        body = answer.json()
        self._token = str(body["access_token"])
        self._expires = time.monotonic() + max(0.0, float(body.get("expires_in", 60)) - self._margin_s)
        return self._token

    async def headers(self, http: httpx.AsyncClient) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(http)}"}


def sign_in_lines(tracker_url: str, sign_in: SignIn | None, provider_description: str = "") -> list[str]:
    """What the run prints about signing in (or, loudly, that nobody has to)."""
    if sign_in is None:
        return [
            "  sign-in         OFF (--no-sign-in): anyone who reaches intake can submit a dossier and"
            " anyone who reaches the tracker can read every dossier and replay; development only",
        ]
    users = ", ".join(f"{u.username}/{u.password} ({', '.join(u.roles)})" for u in demo_users())
    clients = ", ".join(f"{c}/{s}" for c, s in sorted(sign_in.client_secrets.items()))
    return [
        f"  sign-in         {tracker_url}/giam-sat   staff sign in there, with the provider at"
        f" {sign_in.issuer}" + (f" ({provider_description})" if provider_description else ""),
        f"                  demo users (user/password): {users}",
        f"                  demo client systems (client credentials): {clients}",
        "                  these are demo credentials of deploy/oidc/lienthong-realm.json, for this local"
        " stack only",
    ]

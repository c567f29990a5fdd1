"""Who may call the deployed bus: the OpenID Connect settings intake and the tracker are given.

Intake checks client systems' access tokens (``LIENTHONG_OIDC_ISSUER``, the client map in
``LIENTHONG_OIDC_CLIENTS_FILE``); the tracker signs staff in to the supervision page (the same
issuer, ``LIENTHONG_PUBLIC_URL`` for its redirect URI, and the session cookie's secret in
``LIENTHONG_SESSION_SECRET_FILE``, the same file for every replica so that a session works on any of
them). The issuer and the page's address belong to the city's identity provider and ingress, so the
generated manifests hold placeholders under ``.invalid`` (RFC 2606: they never resolve), which the
operator replaces; until then staff cannot sign in and client systems cannot submit, rather than the
bus running open. Only a deliberate ``LIENTHONG_STAFF_SIGN_IN=off`` starts the tracker without an
issuer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from services.tools.deploy.components import Component

ROOT = Path(__file__).resolve().parents[3]
CLIENTS_FILE: Final = ROOT / "deploy" / "oidc" / "clients.yaml"
CLIENTS_FILE_NAME: Final = "clients.yaml"
SESSION_SECRET_NAME: Final = "lienthong-session"
SESSION_SECRET_KEY: Final = "session.secret"
PLACEHOLDER_ISSUER: Final = "https://login.example.invalid/realms/lienthong"
PLACEHOLDER_PUBLIC_URL: Final = "https://lienthong.example.invalid"


def uses_identity(component: Component) -> bool:
    """Whether the process checks tokens or signs staff in (intake and the tracker)."""
    return component.kind == "service" and component.name in ("intake", "tracker")


def identity_env(component: Component, *, clients_dir: str, session_dir: str) -> dict[str, str]:
    """The identity settings of intake or the tracker that are not the operator's to choose (the issuer
    and the page's address come from configuration the operator edits)."""
    if component.name == "intake":
        return {"LIENTHONG_OIDC_CLIENTS_FILE": f"{clients_dir}/{CLIENTS_FILE_NAME}"}
    if component.name == "tracker":
        return {
            "LIENTHONG_STAFF_SIGN_IN": "on",
            "LIENTHONG_SESSION_SECRET_FILE": f"{session_dir}/{SESSION_SECRET_KEY}",
        }
    return {}

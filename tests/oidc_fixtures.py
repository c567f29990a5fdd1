"""The session's real OpenID Connect provider: Keycloak started from its own distribution
(services.tools.localoidc) with the realm of deploy/oidc/lienthong-realm.json and a second realm,
``elsewhere``, whose ``counter-app`` has the same secret but another issuer and other keys; or the
provider named by ``LIENTHONG_TEST_OIDC_ISSUER``.

With an external provider, ``LIENTHONG_TEST_OIDC_CLIENT_SECRETS`` gives the client systems' secrets
(``counter-app=…,online-portal=…``; the demo secrets of the realm file otherwise) and
``LIENTHONG_TEST_OIDC_OTHER_ISSUER`` a second issuer with a ``counter-app`` client of the same
secret (the tests that need it skip without it).

Any test that asks for ``oidc_provider`` is marked ``oidc``.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import httpx
import pytest

from services.tools.localoidc.errors import ProviderError
from services.tools.localoidc.provider import REALM_FILE, LocalOidcProvider

ISSUER_ENV = "LIENTHONG_TEST_OIDC_ISSUER"
SECRETS_ENV = "LIENTHONG_TEST_OIDC_CLIENT_SECRETS"
OTHER_ISSUER_ENV = "LIENTHONG_TEST_OIDC_OTHER_ISSUER"
OTHER_REALM = "elsewhere"


def demo_secrets(realm_file: Path = REALM_FILE) -> dict[str, str]:
    """The confidential clients' secrets in the realm file (demo values, for local use only)."""
    realm = json.loads(realm_file.read_text(encoding="utf-8"))
    return {
        c["clientId"]: c["secret"] for c in realm["clients"] if not c.get("publicClient") and "secret" in c
    }


def other_realm(realm_file: Path = REALM_FILE) -> dict[str, object]:
    """A realm with the same ``counter-app`` (id, secret, audience) and nothing else: its tokens
    differ from the real ones only by their issuer and signing keys."""
    realm = json.loads(realm_file.read_text(encoding="utf-8"))
    counter = next(c for c in realm["clients"] if c["clientId"] == "counter-app")
    return {"realm": OTHER_REALM, "enabled": True, "sslRequired": "none", "clients": [counter]}


@dataclass(frozen=True)
class OidcProvider:
    """A provider the tests get tokens from."""

    issuer: str
    secrets: Mapping[str, str]
    description: str
    other_issuer: str | None = None
    local: LocalOidcProvider | None = None  # set for the provider this session started

    def token_endpoint(self, issuer: str | None = None) -> str:
        discovery = httpx.get(f"{issuer or self.issuer}/.well-known/openid-configuration", timeout=10)
        discovery.raise_for_status()
        return str(discovery.json()["token_endpoint"])

    def client_token(self, client_id: str, *, issuer: str | None = None) -> str:
        """An access token for ``client_id`` from the provider's token endpoint (client credentials)."""
        answer = httpx.post(
            self.token_endpoint(issuer),
            data={"grant_type": "client_credentials"},
            auth=(client_id, self.secrets[client_id]),
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])


LOGIN_FORM = re.compile(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', re.S)


def sign_in_with_form(authorization_url: str, username: str, password: str) -> str:
    """What a browser does on the provider's own login page, without a browser: open the
    authorization URL a page redirected to, post the user's name and password to the login form's
    action, and return where the provider sends the browser back (the page's callback URL, with the
    code and state), without following it. The provider's cookies are kept between the two
    requests (sent by hand: on plain http a cookie jar drops Keycloak's Secure cookies)."""
    with httpx.Client(timeout=15, follow_redirects=False) as http:
        login = http.get(authorization_url)
        assert login.status_code == 200, login.text[:500]
        found = LOGIN_FORM.search(login.text)
        assert found is not None, f"no login form on the provider's page: {login.text[:500]}"
        cookies = "; ".join(
            header.split(";", 1)[0] for header in login.headers.get_list("set-cookie") if "=" in header
        )
        answer = http.post(
            html.unescape(found.group(1)),
            data={"username": username, "password": password, "credentialId": ""},
            headers={"Cookie": cookies},
        )
        refused = f"the provider did not sign {username} in: {answer.text[:500]}"
        assert answer.status_code in (302, 303), refused
        return str(answer.headers["location"])


def _unavailable(reason: str) -> NoReturn:
    """No provider: a failure under CI (.ci/run installs Java 21+ and Maven), a skip elsewhere."""
    message = f"the OIDC tests need a provider: set {ISSUER_ENV}, or install Java 21+ and Maven. {reason}"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message)
    pytest.skip(message)


def _secrets() -> dict[str, str]:
    configured = os.environ.get(SECRETS_ENV, "")
    pairs = dict(item.split("=", 1) for item in configured.split(",") if "=" in item)
    return demo_secrets() | pairs


@pytest.fixture(scope="session")
def oidc_provider(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[OidcProvider]:
    """The real provider the run uses: the one in LIENTHONG_TEST_OIDC_ISSUER, else a local Keycloak."""
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    configured = os.environ.get(ISSUER_ENV)
    if configured:
        provider = OidcProvider(
            configured.rstrip("/"),
            _secrets(),
            f"the provider in {ISSUER_ENV} ({configured})",
            other_issuer=os.environ.get(OTHER_ISSUER_ENV) or None,
        )
        if reporter is not None:
            reporter.write_line(f"\nOIDC: using {provider.description}")
        yield provider
        return
    work = tmp_path_factory.mktemp("oidc")
    elsewhere = work / f"{OTHER_REALM}-realm.json"
    elsewhere.write_text(json.dumps(other_realm()), encoding="utf-8")
    local = LocalOidcProvider(work / "keycloak", realm_files=(REALM_FILE, elsewhere))
    try:
        local.start()
    except ProviderError as error:
        local.stop()
        _unavailable(str(error))
    try:
        dist = local.distribution
        provider = OidcProvider(
            local.issuer(),
            demo_secrets(),
            f"a local Keycloak {dist.version} ({dist.source}, Java {local.java}) at {local.base_url}",
            other_issuer=local.issuer(OTHER_REALM),
            local=local,
        )
        if reporter is not None:
            reporter.write_line(f"\nOIDC: using {provider.description}")
        yield provider
    finally:
        local.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "oidc_provider" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.oidc)

"""`lienthong login`'s device authorization grant against the real provider: the person opens the
verification URL, signs in there (driven over HTTP as a browser would), and the CLI's poll gets a
token naming them, with their role, which it keeps owner-only and uses for the operator commands."""

from __future__ import annotations

import html
import re
import stat
from pathlib import Path
from urllib.parse import urljoin

import httpx

from services.runtime.auth import cli_token
from services.runtime.auth.bearer import BearerVerifier
from services.runtime.auth.staff import STAFF_AUDIENCE, Role, Staff
from tests.oidc_fixtures import OidcProvider

FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.S)
FIELD = re.compile(r'<input[^>]*name="([^"]+)"[^>]*?(?:value="([^"]*)")?[^>]*>', re.S)


def browse(url: str, username: str, password: str) -> str:
    """What a person does in a browser at the verification URL: follow the provider's pages, sign in
    on its login form, accept on its grant form; the last page's text."""
    cookies: dict[str, str] = {}
    with httpx.Client(timeout=15, follow_redirects=False) as http:

        def go(method: str, target: str, data: dict[str, str] | None = None) -> httpx.Response:
            for _ in range(10):
                header = "; ".join(f"{k}={v}" for k, v in cookies.items())
                answer = http.request(method, target, data=data, headers={"Cookie": header})
                for set_cookie in answer.headers.get_list("set-cookie"):
                    name, _, rest = set_cookie.partition("=")
                    cookies[name.strip()] = rest.split(";", 1)[0]
                if answer.status_code not in (301, 302, 303):
                    return answer
                target, method, data = urljoin(target, answer.headers["location"]), "GET", None
            raise AssertionError("too many redirects")

        page = go("GET", url)
        for _ in range(4):
            found = FORM.search(page.text)
            if found is None:
                return page.text
            action, body = html.unescape(found.group(1)), found.group(2)
            fields = {name: html.unescape(value or "") for name, value in FIELD.findall(body)}
            if "password" in fields:
                fields |= {"username": username, "password": password}
            elif "accept" in fields or "cancel" in fields:
                fields.pop("cancel", None)
                fields["accept"] = "Yes"
            page = go("POST", urljoin(str(page.url), action), fields)
        return page.text


async def test_login_by_device_code_gets_the_persons_token_and_keeps_it_owner_only(
    oidc_provider: OidcProvider, tmp_path: Path
) -> None:
    issuer = oidc_provider.issuer
    code = cli_token.start_device_login(issuer)
    assert code.user_code and code.verification_uri.startswith(issuer)
    browse(code.verification_uri_complete or code.verification_uri, "operator1", "operator1-demo")
    answer = cli_token.finish_device_login(issuer, code)

    path = cli_token.store(issuer, answer, tmp_path / "config" / "lienthong" / "token.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = cli_token.stored_token(issuer, path)
    assert token is not None
    staff = Staff.from_token(await BearerVerifier(issuer, STAFF_AUDIENCE).verify(token))
    assert staff.username == "operator1" and staff.may(Role.OPERATOR) and not staff.may(Role.AUDITOR)
    assert cli_token.forget(path) and cli_token.stored_token(issuer, path) is None

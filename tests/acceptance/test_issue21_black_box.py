"""Issue 21's acceptance, black box: a running local stack signed in with the real provider (the test
session's Keycloak, realm deploy/oidc/lienthong-realm.json), used only through its public doors as an
outsider, a client system or a staff member would use them: intake's ``POST /dossiers``, the
supervision page (signed in through the provider's own login form), the tracker's read API and
``lienthong audit show``.

- no token → 401, at intake and at the tracker's read API;
- the online portal's client cannot hand in a counter dossier (403), while the counter application can;
- a viewer cannot replay (403);
- a cross-site form POST without the CSRF token is refused;
- an operator's replay, with the reason they typed, is in ``lienthong audit show`` under their subject;
- the stack's own sample traffic signs in as the counter application and the online portal.

A browser is played by :class:`Browser`: it follows redirects and keeps each host's cookies itself
(Python's cookie jar would not send a ``Secure`` cookie over the stack's plain http on 127.0.0.1,
which a browser does for a loopback address).
"""

from __future__ import annotations

import asyncio
import html
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from schemas.agencies import Agency
from services.tools.stack.stack import DEFAULT_AGENCIES, LocalStack, StackPorts
from services.tools.stack.traffic import Submitted, Traffic
from tests.oidc_fixtures import OidcProvider
from tests.stack_helpers import (
    SHORT_TIERS,
    clear_faults,
    dead_letters_of,
    sample_traffic,
    set_faults,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.oidc, pytest.mark.timeout(600)]

PAGE = "/giam-sat"
REASON = "the civil-status registry is back after its outage (acceptance test)"


# --- a browser, as far as these tests need one ------------------------------------------------------


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._open: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._open = Form(named.get("action", ""), named.get("method", "get").lower())
            self.forms.append(self._open)
        elif tag in ("input", "textarea", "select") and self._open is not None and named.get("name"):
            self._open.fields[named["name"]] = named.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


def forms_of(page: str) -> list[Form]:
    parser = _Forms()
    parser.feed(page)
    return parser.forms


def csrf_fields(form: Form) -> dict[str, str]:
    return {name: value for name, value in form.fields.items() if "csrf" in name.lower()}


class Browser:
    """Follows redirects like a browser and keeps the cookies of each host:port, ``Secure`` or not."""

    def __init__(self) -> None:
        self.http = httpx.AsyncClient(timeout=15.0)
        self.jars: dict[str, dict[str, str]] = {}

    async def aclose(self) -> None:
        await self.http.aclose()

    def _keep(self, answer: httpx.Response) -> None:
        jar = self.jars.setdefault(answer.url.netloc.decode(), {})
        for header in answer.headers.get_list("set-cookie"):
            parsed: SimpleCookie = SimpleCookie()
            parsed.load(header)
            for name, morsel in parsed.items():
                if morsel["max-age"] == "0" or not morsel.value:
                    jar.pop(name, None)
                else:
                    jar[name] = morsel.value

    async def request(
        self,
        method: str,
        url: str,
        *,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        follow: bool = True,
    ) -> httpx.Response:
        for _ in range(20):
            jar = self.jars.get(httpx.URL(url).netloc.decode(), {})
            sent = dict(headers or {})
            if jar:
                sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
            answer = await self.http.request(method, url, data=data, headers=sent)
            self.http.cookies.clear()  # the jars above are the only memory
            self._keep(answer)
            if not follow or answer.status_code not in (301, 302, 303, 307, 308):
                return answer
            url = urljoin(str(answer.url), answer.headers["location"])
            if answer.status_code in (301, 302, 303):
                method, data = "GET", None
            headers = None
        raise AssertionError(f"more than 20 redirects from {url}")

    async def get(self, url: str) -> httpx.Response:
        return await self.request("GET", url)

    async def sign_in(self, stack: LocalStack, username: str, password: str) -> httpx.Response:
        """Open the supervision page, be sent to the provider's login form, fill it in, and land back
        on the page signed in."""
        login = await self.get(f"{stack.tracker_url}{PAGE}")
        issuer = stack.oidc_issuer or ""
        assert str(login.url).startswith(issuer), (
            f"opening the page did not lead to the provider's sign-in (ended at {login.url},"
            f" {login.status_code})"
        )
        (form,) = [f for f in forms_of(login.text) if "login-actions/authenticate" in f.action]
        fields = {**form.fields, "username": username, "password": password}
        landed = await self.request("POST", html.unescape(form.action), data=fields)
        assert str(landed.url).startswith(stack.tracker_url), f"signed in, but ended at {landed.url}"
        return landed


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    opened = Browser()
    try:
        yield opened
    finally:
        await opened.aclose()


# --- the stack and one stuck dossier ----------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, oidc_provider: OidcProvider
) -> Iterator[LocalStack]:
    """The local stack as `lienthong run` starts it, sign-in on, with the session's provider."""
    with LocalStack(
        kafka_bootstrap,
        tmp_path_factory.mktemp("issue21"),
        topic_prefix=f"i21{int(time.time() * 1000) % 10**8}.",
        ports=StackPorts.free(DEFAULT_AGENCIES),
        service_env=SHORT_TIERS,
        oidc_issuer=oidc_provider.issuer,
    ) as running:
        assert running.sign_in is not None
        yield running


@pytest.fixture(scope="module")
def stuck_marriage(stack: LocalStack) -> Submitted:
    """A marriage handed in by the counter application while the civil-status registry is down:
    dead-lettered once the retries are spent; the registry is back when this returns."""

    async def arrange() -> Submitted:
        await set_faults(stack, Agency.CIVIL_STATUS, down_for_s=600)
        async with sample_traffic(stack) as traffic:
            marriage = await traffic.marriage()

        async def dead_lettered() -> bool:
            letters = await dead_letters_of(stack, Agency.CIVIL_STATUS.value)
            return any(letter.key == marriage.dossier_id.encode() for letter in letters)

        await wait_for(dead_lettered, 120, "the marriage's dead letter")
        await clear_faults(stack, Agency.CIVIL_STATUS)
        return marriage

    return asyncio.run(arrange())


def replay_url(stack: LocalStack, dossier_id: str, agency: Agency) -> str:
    return f"{stack.tracker_url}{PAGE}/ho-so/{dossier_id}/replay/{agency.value}"


def subject_of(oidc_provider: OidcProvider, username: str) -> str:
    """The provider's ``sub`` of a demo user (its admin API: the test session's own Keycloak)."""
    local = oidc_provider.local
    if local is None:
        pytest.skip("the subject of a user is read from the session's own Keycloak (no admin elsewhere)")
    admin = httpx.post(
        local.token_endpoint("master"),
        data={"grant_type": "password", "client_id": "admin-cli", "username": "admin"}
        | {"password": local.admin_password},
        timeout=10,
    )
    admin.raise_for_status()
    found = httpx.get(
        f"{local.base_url}/admin/realms/lienthong/users",
        params={"username": username, "exact": "true"},
        headers={"Authorization": f"Bearer {admin.json()['access_token']}"},
        timeout=10,
    )
    found.raise_for_status()
    return str(found.json()[0]["id"])


async def example(stack: LocalStack, channel: str) -> dict[str, Any]:
    """A marriage intake accepts (its own example), handed in on ``channel``."""
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"{stack.intake_url}/procedures/9.900005/example")
        answer.raise_for_status()
    return {**answer.json()["submission"], "channel": channel}


def one_sentence(answer: httpx.Response) -> str:
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and detail.strip(), answer.text
    return detail


# --- the acceptance -----------------------------------------------------------------------------------


async def test_no_token_is_401_at_intake(stack: LocalStack) -> None:
    dossier = await example(stack, "counter")
    async with httpx.AsyncClient(timeout=10) as http:
        anonymous = await http.post(f"{stack.intake_url}/dossiers", json=dossier)
        forged = await http.post(
            f"{stack.intake_url}/dossiers", json=dossier, headers={"Authorization": "Bearer not.a.token"}
        )
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
    one_sentence(anonymous)
    assert forged.status_code == 401
    one_sentence(forged)


async def test_no_token_is_401_at_the_tracker_read_api(stack: LocalStack) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        listing = await http.get(f"{stack.tracker_url}/dossiers")
        stats = await http.get(f"{stack.tracker_url}/stats")
    assert (listing.status_code, stats.status_code) == (401, 401), (listing.text[:200], stats.text[:200])


async def test_the_portal_client_cannot_use_the_counter_channel(
    stack: LocalStack, oidc_provider: OidcProvider
) -> None:
    portal = {"Authorization": f"Bearer {oidc_provider.client_token('online-portal')}"}
    counter = {"Authorization": f"Bearer {oidc_provider.client_token('counter-app')}"}
    async with httpx.AsyncClient(timeout=10) as http:
        at_the_counter = await http.post(
            f"{stack.intake_url}/dossiers",
            json=await example(stack, "counter"),
            headers={**portal, "Idempotency-Key": "portal-counter-1"},
        )
        online = await http.post(
            f"{stack.intake_url}/dossiers",
            json=await example(stack, "online"),
            headers={**portal, "Idempotency-Key": "portal-online-1"},
        )
        counter_app = await http.post(
            f"{stack.intake_url}/dossiers",
            json=await example(stack, "counter"),
            headers={**counter, "Idempotency-Key": "counter-1"},
        )
    assert at_the_counter.status_code == 403
    assert "counter" in one_sentence(at_the_counter)
    assert online.status_code == 201, online.text
    assert counter_app.status_code == 201, counter_app.text


async def test_a_viewer_gets_403_on_replay(
    stack: LocalStack, stuck_marriage: Submitted, browser: Browser
) -> None:
    page = await browser.sign_in(stack, "viewer1", "viewer1-demo")
    dossier = await browser.get(f"{stack.tracker_url}{PAGE}/ho-so/{stuck_marriage.dossier_id}")
    assert dossier.status_code == 200
    assert not [f for f in forms_of(dossier.text) if "/replay/" in f.action], "a viewer sees no replay button"
    # What a viewer's page holds of a CSRF token, sent along: the refusal is the role's, not the token's.
    tokens = {k: v for f in forms_of(page.text) + forms_of(dossier.text) for k, v in csrf_fields(f).items()}
    answer = await browser.request(
        "POST",
        replay_url(stack, stuck_marriage.dossier_id, Agency.CIVIL_STATUS),
        data={**tokens, "reason": "a viewer trying"},
        headers={"Origin": stack.tracker_url},
        follow=False,
    )
    assert answer.status_code == 403, (answer.status_code, answer.text[:300])
    assert "operator" in answer.text, "refused for the role it lacks"
    letters = await dead_letters_of(stack, Agency.CIVIL_STATUS.value)
    assert any(letter.key == stuck_marriage.dossier_id.encode() for letter in letters)


async def test_a_cross_site_form_post_without_the_csrf_token_is_refused(
    stack: LocalStack, stuck_marriage: Submitted, browser: Browser
) -> None:
    await browser.sign_in(stack, "operator1", "operator1-demo")
    url = replay_url(stack, stuck_marriage.dossier_id, Agency.CIVIL_STATUS)
    # The attacker's page posts the replay form from its own site, with the operator's cookies; and
    # once more as a browser that sends no Origin (the CSRF token alone must then stop it).
    for headers in (
        {"Origin": "https://attacker.example", "Referer": "https://attacker.example/prize"},
        {},
    ):
        answer = await browser.request(
            "POST", url, data={"reason": "clicked a link in an e-mail"}, headers=headers, follow=False
        )
        assert answer.status_code in (400, 403), (headers, answer.status_code, answer.text[:300])
        assert "replayed=" not in answer.headers.get("location", ""), "nothing was replayed"
    letters = await dead_letters_of(stack, Agency.CIVIL_STATUS.value)
    assert any(letter.key == stuck_marriage.dossier_id.encode() for letter in letters)


async def test_an_operators_replay_is_in_audit_show_with_their_subject(
    stack: LocalStack, stuck_marriage: Submitted, browser: Browser, oidc_provider: OidcProvider
) -> None:
    await browser.sign_in(stack, "operator1", "operator1-demo")
    dossier_page = f"{stack.tracker_url}{PAGE}/ho-so/{stuck_marriage.dossier_id}"
    dossier = await browser.get(dossier_page)
    assert dossier.status_code == 200, dossier.text[:300]
    (form,) = [f for f in forms_of(dossier.text) if f"/replay/{Agency.CIVIL_STATUS.value}" in f.action]
    assert csrf_fields(form), "the replay form carries a CSRF token"
    fields = {**form.fields, "reason": REASON}
    replayed = await browser.request(
        "POST",
        urljoin(dossier_page, html.unescape(form.action)),
        data=fields,
        headers={"Origin": stack.tracker_url},
    )
    assert replayed.status_code == 200 and str(replayed.url).startswith(dossier_page), replayed.text[:300]
    subject = subject_of(oidc_provider, "operator1")
    tracker_db = stack.work_dir / "data" / "tracker.db"
    command = [sys.executable, "-m", "services.tools.cli", "audit", "show", stuck_marriage.dossier_id]
    shown = ""

    async def in_the_log() -> bool:
        nonlocal shown
        done = await asyncio.to_thread(
            subprocess.run,
            [*command, "--db", str(tracker_db)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        shown = done.stdout + done.stderr
        return any("replay" in line and subject in line and REASON in line for line in shown.splitlines())

    try:
        await wait_for(in_the_log, 60, "the operator's replay in `lienthong audit show`", interval_s=1.0)
    except AssertionError as missing:
        raise AssertionError(f"{missing}; audit show printed:\n{shown}") from None


async def test_the_stacks_own_traffic_signs_in_as_its_client_systems(stack: LocalStack) -> None:
    """`lienthong run`'s sample traffic: the portal's and the counter's dossiers are accepted with their
    clients' tokens, and the stack's reader of the tracker (the bank paying notices) is let in."""
    traffic = Traffic(
        stack.intake_url,
        stack.tracker_url,
        stack.sandbox_url(Agency.LAND),
        stack.sandbox_url(Agency.TAX),
        seed=int(time.time()) + 1,
        sign_in=stack.sign_in,
    )
    try:
        online = await traffic.marriage(channel="online")
        counter = await traffic.birth()
        assert online.dossier_id != counter.dossier_id
        assert await traffic.pay_waiting_notices() >= 0
    finally:
        await traffic.aclose()

"""Staff sign in to the supervision page with the real provider (Keycloak, the realm of
``deploy/oidc/lienthong-realm.json``), over HTTP, without a browser: the page sends them to the
provider's login form, the test fills it in as a person would (``tests.oidc_fixtures.sign_in_with_form``),
and the provider's redirect comes back to the tracker's ``/auth/callback``, which exchanges the code
(with its PKCE verifier) at the provider's token endpoint. Nothing is mocked on the provider's side.

The tracker is the real app (``build_app``) on FastStream's in-memory broker; the page's public URL is
a loopback address, so the provider's redirects are handed to the app in memory. The replay's Kafka
calls are replaced (the browser test, ``test_staff_browser.py``, replays on a real stack), so that
what is checked here is who may press the button and what is recorded of it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.events import DossierReceived
from services.runtime.auth.signin import CSRF_FIELD, SESSION_COOKIE, SignInNotConfigured
from services.runtime.failures import dead_letter_replay, operator_actions
from services.tracker.app import TrackerSettings, build_app, staff_access
from tests.factories import outcome_for
from tests.in_memory import InMemoryService
from tests.oidc_fixtures import OidcProvider, sign_in_with_form
from tests.unit.test_tracker import BIRTH, MONDAY_9AM, receive, requested

pytestmark = pytest.mark.timeout(300)

PUBLIC = "http://127.0.0.1:8002"  # nothing listens there: the redirects are handed to the app in memory
PASSWORDS = {"viewer1": "viewer1-demo", "operator1": "operator1-demo", "auditor1": "auditor1-demo"}


class SignedInTracker:
    """The tracker app with staff sign-in on, and one browser-like HTTP client (its cookie jar)."""

    def __init__(self, provider: OidcProvider, work: Path) -> None:
        secret = work / "session-secret"
        secret.write_text("a-test-session-secret-of-forty-or-more-characters\n", encoding="utf-8")
        self.settings = TrackerSettings(
            data_dir=work / "data",
            bootstrap_servers="127.0.0.1:1",
            oidc_issuer=provider.issuer,
            public_url=PUBLIC,
            session_secret_file=secret,
        )
        self.service = InMemoryService(lambda: build_app(self.settings), [])

    async def start(self) -> None:
        await self.service.start()
        assert self.service.app is not None
        self.transport = httpx.ASGITransport(app=self.service.app)

    def client(self) -> httpx.AsyncClient:
        """A new browser: its own cookies."""
        return httpx.AsyncClient(transport=self.transport, base_url=PUBLIC, timeout=30)

    async def stop(self) -> None:
        await self.service.stop()


@pytest.fixture
async def tracker(oidc_provider: OidcProvider, tmp_path: Path) -> AsyncIterator[SignedInTracker]:
    running = SignedInTracker(oidc_provider, tmp_path)
    await running.start()
    yield running
    await running.stop()


async def stuck_birth(tracker: SignedInTracker) -> DossierReceived:
    """A birth whose health-card handoff to social insurance is dead-lettered."""
    received = receive(BIRTH)
    birth = requested(received, "register_birth", MONDAY_9AM)
    born = outcome_for(birth, "completed", after=timedelta(hours=2))
    card = requested(received, "issue_health_card", born.occurred_at, cause=born)
    stuck = outcome_for(
        card, "dead_lettered", after=timedelta(minutes=15), reason="unreachable", error_class="transient"
    )
    for event in (received, birth, born, card, stuck):
        await tracker.service.feed(event)
    return received


async def sign_in(
    browser: httpx.AsyncClient, username: str, *, next_path: str = "/giam-sat"
) -> httpx.Response:
    """Sign ``username`` in as a browser would; the answer of the tracker's callback."""
    start = await browser.get("/auth/login", params={"next": next_path})
    assert start.status_code in (302, 303, 307), start.text
    to_provider = start.headers["location"]
    assert "code_challenge_method=S256" in to_provider and "code_challenge=" in to_provider
    assert "nonce=" in to_provider and "state=" in to_provider
    back = await asyncio.to_thread(sign_in_with_form, to_provider, username, PASSWORDS[username])
    assert back.startswith(f"{PUBLIC}/auth/callback?"), back
    answer = await browser.get(back)
    assert answer.status_code == 303, answer.text
    return answer


def csrf_of(html: str) -> str:
    found = re.search(rf'name="{CSRF_FIELD}" value="([^"]+)"', html)
    assert found is not None, "the page has no CSRF field"
    return found.group(1)


async def test_without_a_session_the_page_sends_to_sign_in_and_the_api_answers_401(
    tracker: SignedInTracker,
) -> None:
    async with tracker.client() as browser:
        page = await browser.get("/giam-sat/ho-so/anything?lang=en")
        assert page.status_code == 303
        assert page.headers["location"] == "/auth/login?next=%2Fgiam-sat%2Fho-so%2Fanything%3Flang%3Den"
        api = await browser.get("/dossiers")
        assert api.status_code == 401
        assert "staff sign-in" in api.json()["detail"]
        assert api.headers["www-authenticate"] == "Bearer"
        # A callback nobody started here (a forged or replayed redirect) signs nobody in.
        forged = await browser.get("/auth/callback", params={"code": "stolen", "state": "guessed"})
        assert forged.status_code == 401 and "did not succeed" in forged.json()["detail"]
        assert (await browser.get("/auth/me")).status_code == 401
        # What Prometheus and the probes read stays open.
        for path in ("/health", "/metrics"):
            assert (await browser.get(path)).status_code == 200, path


async def test_a_viewer_sees_the_page_without_the_replay_button_and_may_not_replay(
    tracker: SignedInTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    received = await stuck_birth(tracker)
    replayed: list[Any] = []

    async def read(*_: Any, **__: Any) -> list[dead_letter_replay.DeadLetter]:
        replayed.append("read")
        return []

    monkeypatch.setattr(dead_letter_replay, "read_dead_letters", read)
    async with tracker.client() as browser:
        back = await sign_in(browser, "viewer1", next_path=f"/giam-sat/ho-so/{received.dossier_id}")
        assert back.headers["location"] == f"/giam-sat/ho-so/{received.dossier_id}"
        cookie = next(h for h in back.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "="))
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=lax", "path=/"} <= flags
        assert "secure" not in flags  # plain http on the loopback interface only (see cookie_is_secure)

        page = await browser.get(back.headers["location"])
        assert page.status_code == 200
        assert "viewer1" in page.text and 'data-state="dead_lettered"' in page.text
        assert "replay-button" not in page.text and "/replay/" not in page.text
        assert "sign-in-off" not in page.text

        token = csrf_of(page.text)  # the sign-out form's: the same session's token
        refused = await browser.post(
            f"/giam-sat/ho-so/{received.dossier_id}/replay/social_insurance",
            data={CSRF_FIELD: token, "reason": "let me"},
            headers={"Origin": PUBLIC},
        )
        assert refused.status_code == 403
        assert refused.json()["detail"] == "this page needs the operator role, and viewer1 has viewer."
        assert replayed == []

        # The read API with the session cookie.
        answer = await browser.get(f"/dossiers/{received.dossier_id}")
        assert answer.status_code == 200 and answer.json()["stuck"] is True
        me = (await browser.get("/auth/me")).json()
        assert me["username"] == "viewer1" and me["roles"] == ["viewer"]


async def test_an_operators_replay_needs_the_csrf_token_the_page_origin_and_a_reason(
    tracker: SignedInTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    received = await stuck_birth(tracker)
    mine = dead_letter_replay.DeadLetter(
        "handoff.social_insurance.requested.dlq",
        0,
        3,
        MONDAY_9AM,
        str(received.dossier_id).encode(),
        b"{}",
        {},
    )
    replays: list[tuple[str, list[str]]] = []
    recorded: list[operator_actions.OperatorAction] = []

    async def read(*_: Any, **__: Any) -> list[dead_letter_replay.DeadLetter]:
        return [mine]

    async def replay(
        _: str, letters: Sequence[dead_letter_replay.DeadLetter], *, operator: str, **__: Any
    ) -> dead_letter_replay.ReplayReport:
        replays.append((operator, [x.id for x in letters]))
        return dead_letter_replay.ReplayReport([x.id for x in letters], [])

    async def record(_: str, action: operator_actions.OperatorAction, **__: Any) -> None:
        recorded.append(action)

    monkeypatch.setattr(dead_letter_replay, "read_dead_letters", read)
    monkeypatch.setattr(dead_letter_replay, "replay", replay)
    monkeypatch.setattr(operator_actions, "record_action", record)
    target = f"/giam-sat/ho-so/{received.dossier_id}/replay/social_insurance"
    async with tracker.client() as browser:
        await sign_in(browser, "operator1")
        me = (await browser.get("/auth/me")).json()
        page = await browser.get(f"/giam-sat/ho-so/{received.dossier_id}")
        assert page.status_code == 200 and "replay-button" in page.text
        token = csrf_of(page.text)

        no_token = await browser.post(target, data={"reason": "registry back"}, headers={"Origin": PUBLIC})
        assert no_token.status_code == 403 and "CSRF token" in no_token.json()["detail"]
        wrong = await browser.post(
            target, data={CSRF_FIELD: "forged", "reason": "x"}, headers={"Origin": PUBLIC}
        )
        assert wrong.status_code == 403 and "CSRF token" in wrong.json()["detail"]
        for cross_site in ({"Origin": "https://attacker.example"}, {"Sec-Fetch-Site": "cross-site"}):
            refused = await browser.post(target, data={CSRF_FIELD: token, "reason": "x"}, headers=cross_site)
            assert refused.status_code == 403, cross_site
            assert "may only be sent from the page itself" in refused.json()["detail"]
        no_reason = await browser.post(
            target, data={CSRF_FIELD: token, "reason": "  "}, headers={"Origin": PUBLIC}
        )
        assert no_reason.status_code == 400
        assert replays == []

        done = await browser.post(
            target,
            data={CSRF_FIELD: token, "reason": "the registry is back"},
            headers={"Origin": PUBLIC, "Sec-Fetch-Site": "same-origin"},
        )
        assert done.status_code == 303
        shown = await browser.get(done.headers["location"])
        assert "Đã xử lý lại 1 chuyển giao bị kẹt" in shown.text
    # Replayed and recorded as the person who pressed the button, with their reason.
    assert replays == [(me["subject"], [mine.id])]
    assert [(a.subject, a.reason, a.via, a.dossier_id, a.targets) for a in recorded] == [
        (me["subject"], "the registry is back", "supervision-page", str(received.dossier_id), [mine.id])
    ]


async def test_the_api_takes_a_staff_bearer_token_and_refuses_others(
    tracker: SignedInTracker, oidc_provider: OidcProvider
) -> None:
    # The operations team's service account (client credentials) has the viewer and operator roles.
    staff_token = oidc_provider.client_token("operations-automation")
    intake_token = oidc_provider.client_token("counter-app")  # a client system's: meant for intake
    async with tracker.client() as http:
        ok = await http.get("/stats", headers={"Authorization": f"Bearer {staff_token}"})
        assert ok.status_code == 200 and "totals" in ok.json()
        wrong_audience = await http.get("/stats", headers={"Authorization": f"Bearer {intake_token}"})
        assert wrong_audience.status_code == 401
        assert wrong_audience.json()["detail"] == "the access token's aud claim is not acceptable here"
        garbage = await http.get("/dossiers", headers={"Authorization": "Bearer not-a-token"})
        assert garbage.status_code == 401


async def test_signing_out_ends_the_session_here_and_at_the_provider(tracker: SignedInTracker) -> None:
    async with tracker.client() as browser:
        await sign_in(browser, "viewer1")
        page = await browser.get("/giam-sat")
        assert page.status_code == 200
        without_token = await browser.post("/auth/logout", headers={"Origin": PUBLIC})
        assert without_token.status_code == 403
        out = await browser.post(
            "/auth/logout", data={CSRF_FIELD: csrf_of(page.text)}, headers={"Origin": PUBLIC}
        )
        assert out.status_code == 303
        assert out.headers["location"].startswith(
            f"{tracker.settings.oidc_issuer}/protocol/openid-connect/logout?"
        )
        assert (await browser.get("/auth/me")).status_code == 401
        assert (await browser.get("/giam-sat")).status_code == 303


# --- refusing to start (no provider needed) ---


def test_without_an_issuer_the_tracker_refuses_to_start_unless_sign_in_is_off(tmp_path: Path) -> None:
    base: dict[str, Any] = {"data_dir": tmp_path, "bootstrap_servers": "127.0.0.1:1", "oidc_issuer": ""}
    with pytest.raises(SignInNotConfigured) as refusal:
        build_app(TrackerSettings(**base))
    assert str(refusal.value) == (
        "tracker refuses to start: staff sign-in needs the OpenID Connect provider (LIENTHONG_OIDC_ISSUER);"
        " set it, or LIENTHONG_STAFF_SIGN_IN=off (or LIENTHONG_INSECURE_DEV=1) for development only."
    )
    assert not staff_access(TrackerSettings(**base, staff_sign_in="off")).enabled
    assert not staff_access(TrackerSettings(**base, insecure_dev=True)).enabled


def test_sign_in_refuses_plain_http_off_loopback_and_a_short_secret(tmp_path: Path) -> None:
    base: dict[str, Any] = {"data_dir": tmp_path, "oidc_issuer": "https://id.example/realms/x"}
    with pytest.raises(SignInNotConfigured, match="plain http off the loopback interface"):
        staff_access(TrackerSettings(**base, public_url="http://tracker.example"))
    short = tmp_path / "secret"
    short.write_text("short", encoding="utf-8")
    with pytest.raises(SignInNotConfigured, match="shorter than 32 characters"):
        staff_access(TrackerSettings(**base, public_url="https://tracker.example", session_secret_file=short))
    secure = staff_access(TrackerSettings(**base, public_url="https://tracker.example"))
    assert secure.config is not None and secure.config.secure_cookie

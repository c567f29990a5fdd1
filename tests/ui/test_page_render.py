"""The supervision page without a broker: what staff see, in both languages, and what replay selects.

Events are fed through the projection as the runtime does; the page is read over HTTP from the router
mounted on a bare FastAPI app. Replay's Kafka reads are replaced by dead letters the test makes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError
from fastapi import FastAPI

from schemas.events import DossierReceived
from services.runtime.failures import dead_letter_replay
from services.tracker.page import build_page
from tests.factories import outcome_for
from tests.unit.test_tracker import BIRTH, CATALOG, MARRIAGE, MONDAY_9AM, Tracker, receive, requested

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Page:
    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.replayed: list[list[dead_letter_replay.DeadLetter]] = []
        self.recorded: list[Any] = []

        async def replayer(
            _: str, letters: Sequence[dead_letter_replay.DeadLetter]
        ) -> dead_letter_replay.ReplayReport:
            self.replayed.append(list(letters))
            return dead_letter_replay.ReplayReport([x.id for x in letters], [])

        self.log_down = False

        async def recorder(action: Any) -> None:
            if self.log_down:
                raise KafkaConnectionError("the operator-actions topic cannot be reached")
            self.recorded.append(action)

        app = FastAPI()
        app.include_router(
            build_page(
                self.tracker.store,
                CATALOG,
                bootstrap_servers="127.0.0.1:9",
                now=lambda: self.tracker.now,
                replayer=replayer,
                recorder=recorder,
            )
        )
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tracker")

    async def html(self, path: str, **params: Any) -> str:
        answer = await self.http.get(path, params=params or None)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/html")
        return answer.text


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    tracker = Tracker(tmp_path / "tracker.db")
    await tracker.start()
    made = Page(tracker)
    yield made
    await made.http.aclose()
    await tracker.stop()


async def stuck_birth(page: Page) -> DossierReceived:
    received = receive(BIRTH)
    birth = requested(received, "register_birth", MONDAY_9AM)
    born = outcome_for(birth, "completed", after=timedelta(hours=2))
    card = requested(received, "issue_health_card", born.occurred_at, cause=born)
    stuck = outcome_for(
        card,
        "dead_lettered",
        after=timedelta(minutes=15),
        reason="social insurance system unreachable after 4 attempts",
        error_class="transient",
    )
    await page.tracker.feed(received, birth, born, card, stuck)
    return received


def letter(topic: str, key: str, offset: int) -> dead_letter_replay.DeadLetter:
    return dead_letter_replay.DeadLetter(topic, 0, offset, datetime.now(UTC), key.encode(), b"{}", {})


async def test_the_overview_lists_the_stuck_handoff_with_its_reason_and_a_replay_button(page: Page) -> None:
    received = await stuck_birth(page)
    await page.tracker.feed(receive(MARRIAGE))
    root = await page.http.get("/")
    assert root.status_code == 307 and root.headers["location"] == "/giam-sat"

    html = await page.html("/giam-sat")
    assert "Giám sát hồ sơ liên thông" in html and "Chuyển giao bị kẹt" in html
    stuck_rows = re.findall(r'<tr class="stuck-leg" data-dossier-id="([^"]+)" data-agency="([^"]+)"', html)
    assert stuck_rows == [(str(received.dossier_id), "social_insurance")]
    assert "social insurance system unreachable after 4 attempts" in html
    assert f'action="/giam-sat/ho-so/{received.dossier_id}/replay/social_insurance"' in html
    assert "Tỷ lệ đúng hạn" in html and "Theo cơ quan" in html and "Theo thủ tục" in html

    english = await page.html("/giam-sat", lang="en")
    assert "Cross-agency dossier supervision" in english and "Stuck handoffs" in english
    assert "Replay" in english and "Giám sát hồ sơ" not in english


async def test_the_citizen_appears_only_as_a_masked_id(page: Page) -> None:
    received = await stuck_birth(page)
    html = await page.html(f"/giam-sat/ho-so/{received.dossier_id}")
    citizen_id = str(received.data.applicant.citizen_id)
    assert citizen_id not in html
    assert citizen_id[-3:] in html
    assert received.data.applicant.full_name not in html


async def test_a_dossier_page_shows_its_legs_and_timeline(page: Page) -> None:
    received = await stuck_birth(page)
    html = await page.html(f"/giam-sat/ho-so/{received.data.dossier_code}", lang="en")
    assert 'data-state="completed"' in html and 'data-state="dead_lettered"' in html
    assert "Timeline" in html and "handoff.requested" in html
    assert (await page.http.get("/giam-sat/ho-so/nothing-like-this")).status_code == 404


async def test_replay_selects_the_dead_letters_of_that_dossier_and_agency_and_says_so(
    page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    received = await stuck_birth(page)
    mine = letter("handoff.social_insurance.requested.dlq", str(received.dossier_id), 3)
    other_dossier = letter("handoff.social_insurance.requested.dlq", "someone-else", 4)
    other_agency = letter("handoff.residence.requested.dlq", str(received.dossier_id), 5)

    async def read(*_: Any, **__: Any) -> list[dead_letter_replay.DeadLetter]:
        return [mine, other_dossier, other_agency]

    monkeypatch.setattr(dead_letter_replay, "read_dead_letters", read)
    answer = await page.http.post(
        f"/giam-sat/ho-so/{received.dossier_id}/replay/social_insurance", data={"reason": "registry back"}
    )
    assert answer.status_code == 303
    assert page.replayed == [[mine]]
    assert [(a.action, a.reason, a.targets) for a in page.recorded] == [
        ("replay", "registry back", [mine.id])
    ]
    shown = await page.html(answer.headers["location"])
    assert "Đã xử lý lại 1 chuyển giao bị kẹt" in shown

    answer = await page.http.post(
        f"/giam-sat/ho-so/{received.dossier_id}/replay/tax?lang=en", data={"reason": "checking"}
    )
    shown = await page.html(answer.headers["location"])
    assert "No dead letter of this dossier was found for agency tax" in shown


async def test_a_replay_that_cannot_be_recorded_does_not_happen_and_the_page_says_why(
    page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    received = await stuck_birth(page)
    mine = letter("handoff.social_insurance.requested.dlq", str(received.dossier_id), 3)

    async def read(*_: Any, **__: Any) -> list[dead_letter_replay.DeadLetter]:
        return [mine]

    monkeypatch.setattr(dead_letter_replay, "read_dead_letters", read)
    page.log_down = True
    answer = await page.http.post(
        f"/giam-sat/ho-so/{received.dossier_id}/replay/social_insurance?lang=en", data={"reason": "back"}
    )
    assert answer.status_code == 303
    assert page.replayed == [], "nothing is replayed unseen"
    shown = await page.html(answer.headers["location"])
    assert "Not replayed: the action could not be recorded in the log" in shown


async def test_with_sign_in_off_the_page_says_so_and_a_replay_still_needs_a_reason(page: Page) -> None:
    received = await stuck_birth(page)
    shown = await page.html(f"/giam-sat/ho-so/{received.dossier_id}", lang="en")
    assert 'id="sign-in-off"' in shown and "Sign-in is off" in shown
    answer = await page.http.post(f"/giam-sat/ho-so/{received.dossier_id}/replay/social_insurance")
    assert answer.status_code == 400
    assert "needs a reason" in answer.json()["detail"] or "lý do" in answer.json()["detail"]
    assert page.replayed == []


async def test_a_cross_site_replay_post_is_refused_even_with_sign_in_off(page: Page) -> None:
    received = await stuck_birth(page)
    target = f"/giam-sat/ho-so/{received.dossier_id}/replay/social_insurance"
    for headers in ({"Origin": "https://attacker.example"}, {"Sec-Fetch-Site": "cross-site"}):
        answer = await page.http.post(target, data={"reason": "click here"}, headers=headers)
        assert answer.status_code == 403, headers
        assert "may only be sent from the page itself" in answer.json()["detail"]
    assert page.replayed == []

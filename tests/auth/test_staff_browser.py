"""Staff sign in to the supervision page in a real browser (headless chromium driven by selenium), on
a real stack whose intake and tracker sign people in with the session's real provider (Keycloak):
a viewer finds the stuck dossier but has no replay button; an operator signs in on the dossier's own
page, gives a reason and replays it, and the page says so. A screenshot of each is kept under
``test-output/``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.agencies import Agency
from services.tools.stack.signin import STACK_READER
from services.tools.stack.stack import DEFAULT_AGENCIES, LocalStack, StackPorts
from tests.oidc_fixtures import OidcProvider
from tests.stack_helpers import outage_over, sample_traffic, set_faults, wait_for
from tests.ui import test_supervision_page as unsigned_page
from tests.ui.test_supervision_page import OUTAGE_S, SHORT_TIERS, _poll

browser = unsigned_page.browser  # the same headless chromium (a fixture)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(480)]

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
PASSWORDS = {"viewer1": "viewer1-demo", "operator1": "operator1-demo"}


@pytest.fixture
def stack(kafka_bootstrap: str, oidc_provider: OidcProvider, tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack(
        kafka_bootstrap,
        tmp_path / "stack",
        topic_prefix=f"staff{int(time.time() * 1000) % 10**8}.",
        ports=StackPorts.free(DEFAULT_AGENCIES),
        service_env=SHORT_TIERS,
        sign_in=True,
        oidc_issuer=oidc_provider.issuer,
    ) as running:
        yield running


def sign_in_on_the_provider_page(browser: Any, username: str, back_to: str) -> None:
    """Fill in the provider's login form as the person would, and wait to be back on ``back_to``."""
    from selenium.webdriver.common.by import By

    _poll(lambda: bool(browser.find_elements(By.ID, "username")), 20, "the provider's login form")
    browser.find_element(By.ID, "username").send_keys(username)
    browser.find_element(By.ID, "password").send_keys(PASSWORDS[username])
    browser.find_element(By.ID, "kc-login").click()
    _poll(lambda: browser.current_url.startswith(back_to), 20, f"{username} coming back to {back_to}")


async def test_a_viewer_has_no_replay_button_and_an_operator_replays_with_a_reason(
    stack: LocalStack, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    assert stack.sign_in is not None
    reader = stack.sign_in.credentials(STACK_READER)  # the operations team's account (viewer, operator)
    await set_faults(stack, Agency.CIVIL_STATUS, down_for_s=OUTAGE_S)
    async with sample_traffic(stack) as traffic:
        marriage = await traffic.marriage()

    async def stuck() -> bool:
        async with httpx.AsyncClient(timeout=5.0) as http:
            answer = await http.get(
                f"{stack.tracker_url}/dossiers/{marriage.dossier_id}", headers=await reader.headers(http)
            )
        return answer.status_code == 200 and bool(answer.json()["stuck"])

    await wait_for(stuck, 90, "dead-lettering of the marriage", interval_s=0.5)
    OUTPUT.mkdir(exist_ok=True)

    # A viewer: sent to the provider's login page, back on the overview, the stuck handoff listed
    # with its reason, and no replay button anywhere (nor on the dossier's page).
    browser.get(f"{stack.tracker_url}/giam-sat")
    assert not browser.current_url.startswith(stack.tracker_url)  # on the provider's page
    sign_in_on_the_provider_page(browser, "viewer1", f"{stack.tracker_url}/giam-sat")
    assert "viewer1" in browser.find_element(By.ID, "signed-in").text
    row = browser.find_element(
        By.CSS_SELECTOR, f'tr.stuck-leg[data-dossier-id="{marriage.dossier_id}"][data-agency="civil_status"]'
    )
    assert "civil_status" in row.find_element(By.CSS_SELECTOR, "td.reason").text
    assert not browser.find_elements(By.CSS_SELECTOR, "button.replay-button")
    row.find_element(By.CSS_SELECTOR, "a").click()
    _poll(lambda: "/ho-so/" in browser.current_url, 15, "opening the dossier page")
    assert browser.find_elements(
        By.CSS_SELECTOR, 'tr.leg[data-agency="civil_status"][data-state="dead_lettered"]'
    )
    assert not browser.find_elements(By.CSS_SELECTOR, "button.replay-button")
    browser.save_screenshot(str(OUTPUT / "supervision-viewer.png"))

    # Another person at the same desk: a fresh browser session (the provider's cookies gone too).
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})

    # An operator opens the dossier's page, signs in there, and comes back to it.
    dossier_page = f"{stack.tracker_url}/giam-sat/ho-so/{marriage.dossier_id}"
    browser.get(dossier_page)
    sign_in_on_the_provider_page(browser, "operator1", dossier_page)
    assert "operator1" in browser.find_element(By.ID, "signed-in").text

    async def registry_back() -> bool:
        return await outage_over(stack, Agency.CIVIL_STATUS)

    await wait_for(registry_back, OUTAGE_S + 30, "the civil-status registry coming back", interval_s=0.5)
    leg = browser.find_element(By.CSS_SELECTOR, 'tr.leg[data-agency="civil_status"]')
    leg.find_element(By.CSS_SELECTOR, "input.replay-reason").send_keys("the civil-status registry is back")
    leg.find_element(By.CSS_SELECTOR, "button.replay-button").click()
    _poll(
        lambda: bool(browser.find_elements(By.CSS_SELECTOR, "p.flash.ok")), 30, "the replay's flash message"
    )
    assert "Đã xử lý lại 1" in browser.find_element(By.CSS_SELECTOR, "p.flash.ok").text
    assert not browser.find_elements(By.CSS_SELECTOR, "p.flash.error")  # recorded, too
    browser.save_screenshot(str(OUTPUT / "supervision-operator-replayed.png"))

    def completed() -> bool:
        browser.refresh()
        section = browser.find_element(By.ID, "dossier")
        return bool(section.get_attribute("data-closed") == "true")

    _poll(completed, 60, "the replayed marriage completing")
    assert browser.find_element(By.ID, "dossier").get_attribute("data-result") == "completed"

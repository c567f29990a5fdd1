"""The supervision page in a real browser (Debian's headless chromium driven by selenium), on a real
stack: an agency outage dead-letters a marriage, staff find it on the page, replay it once the registry
is back, and see it complete. A screenshot of the page is kept under ``test-output/``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.agencies import Agency
from services.tools.stack.stack import DEFAULT_AGENCIES, LocalStack, StackPorts
from tests.stack_helpers import outage_over, sample_traffic, set_faults, tracker_detail, wait_for
from tests.ui.browser import FLAGS, chromium, unavailable

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(420)]

SHORT_TIERS = {
    "LIENTHONG_RETRY_DELAYS_S": "[1, 2, 3]",
    "LIENTHONG_RETRY_WITHIN_S": "1",
    "LIENTHONG_CALL_TIMEOUT_S": "2",
    "LIENTHONG_CIRCUIT_COOLDOWN_S": "2",
    "LIENTHONG_POLL_INTERVAL_S": "0.3",
}
OUTAGE_S = 20
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as missing:
        unavailable(f"selenium is not installed ({missing})")
    found = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(found.browser)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(found.driver)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack(
        kafka_bootstrap,
        tmp_path / "stack",
        topic_prefix=f"ui{int(time.time() * 1000) % 10**8}.",
        ports=StackPorts.free(DEFAULT_AGENCIES),
        service_env=SHORT_TIERS,
        sign_in=False,  # the page signed in: tests/auth/test_staff_browser.py
    ) as running:
        yield running


def _poll(condition: Any, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {within_s} s")


async def test_staff_find_a_stuck_dossier_replay_it_and_see_it_complete(
    stack: LocalStack, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    await set_faults(stack, Agency.CIVIL_STATUS, down_for_s=OUTAGE_S)
    async with sample_traffic(stack) as traffic:
        marriage = await traffic.marriage()

    async def stuck() -> bool:
        try:
            return bool((await tracker_detail(stack.tracker_url, marriage.dossier_id))["stuck"])
        except httpx.HTTPStatusError:
            return False

    await wait_for(stuck, 90, "dead-lettering of the marriage")

    # Staff open the supervision page and find the stuck handoff, with its reason.
    browser.get(f"{stack.tracker_url}/")
    assert "Giám sát" in browser.title
    row = browser.find_element(
        By.CSS_SELECTOR, f'tr.stuck-leg[data-dossier-id="{marriage.dossier_id}"][data-agency="civil_status"]'
    )
    assert "civil_status" in row.find_element(By.CSS_SELECTOR, "td.reason").text
    assert marriage.dossier_code in row.text
    OUTPUT.mkdir(exist_ok=True)
    browser.save_screenshot(str(OUTPUT / "supervision-page-stuck.png"))

    # The registry is back; replay from the dossier's own page.
    row.find_element(By.CSS_SELECTOR, "a").click()
    _poll(lambda: "/ho-so/" in browser.current_url, 15, "opening the dossier page")

    async def registry_back() -> bool:
        return await outage_over(stack, Agency.CIVIL_STATUS)

    await wait_for(registry_back, OUTAGE_S + 30, "the civil-status registry coming back", interval_s=0.5)
    leg = browser.find_element(By.CSS_SELECTOR, 'tr.leg[data-agency="civil_status"]')
    leg.find_element(By.CSS_SELECTOR, "input.replay-reason").send_keys("the registry is back")  # required
    leg.find_element(By.CSS_SELECTOR, "button.replay-button").click()
    _poll(
        lambda: bool(browser.find_elements(By.CSS_SELECTOR, "p.flash.ok")), 30, "the replay's flash message"
    )
    assert "Đã xử lý lại 1" in browser.find_element(By.CSS_SELECTOR, "p.flash.ok").text

    def completed() -> bool:
        browser.refresh()
        section = browser.find_element(By.ID, "dossier")
        return bool(section.get_attribute("data-closed") == "true")

    _poll(completed, 60, "the replayed marriage completing")
    assert browser.find_element(By.ID, "dossier").get_attribute("data-result") == "completed"
    assert browser.find_element(By.ID, "dossier-result").text == "Hoàn thành"
    assert not browser.find_elements(By.CSS_SELECTOR, "button.replay-button")

    # Back on the overview, nothing is stuck any more; the screenshot is the CI artefact.
    browser.get(f"{stack.tracker_url}/giam-sat")
    assert not browser.find_elements(
        By.CSS_SELECTOR, f'tr.stuck-leg[data-dossier-id="{marriage.dossier_id}"]'
    )
    browser.save_screenshot(str(OUTPUT / "supervision-page.png"))
    browser.get(f"{stack.tracker_url}/giam-sat/ho-so/{marriage.dossier_id}?lang=en")
    assert "Completed" in browser.find_element(By.ID, "dossier-result").text
    browser.save_screenshot(str(OUTPUT / "supervision-dossier-en.png"))

"""``fail_next``: a blip of exactly N failed calls, set at start or at run time, that counts down."""

from __future__ import annotations

from connectors.sandbox_kit.faults import FaultSettings
from connectors.sandbox_kit.runner import faults_from, parse_args
from connectors.social_insurance.sandbox.app import create_app
from tests.sandboxes.helpers import asgi_client


async def test_the_next_calls_fail_then_the_sandbox_answers() -> None:
    async with asgi_client(create_app()) as http:
        settings = (await http.put("/_sandbox/faults", json={"fail_next": 2, "error_status": 500})).json()
        assert settings["fail_next"] == 2
        answers = [(await http.get("/bhxh/api/requests/unknown")).status_code for _ in range(3)]
        assert answers == [500, 500, 404]
        assert (await http.get("/_sandbox/faults")).json()["fail_next"] == 0
        assert (await http.get("/health")).status_code == 200, "health is never faulted"


def test_fail_next_from_the_command_line() -> None:
    assert faults_from(parse_args("x", 1, ["--fail-next", "3"])).fail_next == 3
    assert FaultSettings().fail_next == 0

"""The sandboxes' fault endpoints are an administrator's: refused without the admin token, absent
without one configured, while the agency endpoints and the records stay as they were."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from connectors.residence.sandbox.app import create_app
from connectors.sandbox_kit.admin import ADMIN_TOKEN_ENV, admin_headers, install_sandbox_kit
from connectors.sandbox_kit.faults import FaultInjector
from connectors.sandbox_kit.store import Store

TOKEN = "a-token-drawn-for-this-test"


def client(app: FastAPI, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sandbox.test", headers=headers
    )


def kit_app(admin_token: str | None) -> FastAPI:
    app = FastAPI()
    install_sandbox_kit(
        app, name="kit", store=Store(":memory:", ""), injector=FaultInjector(), admin_token=admin_token
    )
    return app


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x"]
)
async def test_without_the_admin_token_the_fault_endpoints_answer_401_in_one_sentence(
    method: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else None
    async with client(kit_app(TOKEN), headers) as http:
        answer = await http.request(method, "/_sandbox/faults", json={"failure_rate": 1})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    detail = answer.json()["detail"]
    assert "admin token" in detail and detail.count(". ") == 0 and detail.endswith(".")


async def test_a_refused_call_changes_no_fault_and_the_token_opens_them() -> None:
    app = kit_app(TOKEN)
    async with client(app) as anonymous, client(app, admin_headers(TOKEN)) as admin:
        assert (await anonymous.put("/_sandbox/faults", json={"failure_rate": 1})).status_code == 401
        assert app.state.faults.settings.failure_rate == 0.0
        changed = await admin.put("/_sandbox/faults", json={"failure_rate": 1})
        assert changed.status_code == 200 and changed.json()["failure_rate"] == 1.0
        assert (await admin.delete("/_sandbox/faults")).json()["failure_rate"] == 0.0
        # health and records are not the administrator's: open as before
        assert (await anonymous.get("/health")).status_code == 200
        assert (await anonymous.get("/_sandbox/records")).status_code == 200


async def test_a_sandbox_given_no_admin_token_serves_no_fault_endpoints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    app = create_app()
    assert app.state.fault_endpoints is False
    async with client(app, admin_headers(TOKEN)) as http:
        for method in ("GET", "PUT", "DELETE"):
            assert (await http.request(method, "/_sandbox/faults")).status_code == 404
        assert (await http.get("/health")).status_code == 200


async def test_the_admin_token_is_taken_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ADMIN_TOKEN_ENV, TOKEN)
    app = create_app()
    async with client(app) as anonymous, client(app, admin_headers(TOKEN)) as admin:
        assert (await anonymous.get("/_sandbox/faults")).status_code == 401
        assert (await admin.get("/_sandbox/faults")).status_code == 200

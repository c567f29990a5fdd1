"""Client systems at intake's door, with tokens from a real OpenID Connect provider (Keycloak) over
real HTTP: no token, a garbage or expired one, another issuer's → 401; a client the map does not
allow that channel or procedure → 403; an allowed one → 201, its client id in the dossier's event.

Time is the test's: the intake's clock is set from the token's own ``iat``/``exp``, never read from
the machine.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from schemas.catalog import load_catalog
from schemas.events import DossierReceived, parse_event
from schemas.workdays import default_calendar
from services.intake.api import add_routes
from services.intake.app import IntakeSettings, build_app
from services.intake.auth import AUDIENCE, SubmissionAuth
from services.intake.clients import load_client_map
from services.intake.intake import Intake
from services.intake.store import IntakeStore
from services.runtime.auth.bearer import DEFAULT_LEEWAY_S, BearerVerifier, JwksCache
from services.tools.stack.samples import SampleDossiers
from tests.oidc_fixtures import OidcProvider

CLIENTS_FILE = Path(__file__).resolve().parents[2] / "deploy" / "oidc" / "clients.yaml"


def claims_of(token: str) -> dict[str, Any]:
    """The token's claims, unverified (to set the test's clock from them)."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@dataclass
class Clock:
    at: datetime

    def __call__(self) -> datetime:
        return self.at

    def set_within(self, token: str) -> None:
        """A moment while ``token`` is valid: a second after it was issued."""
        self.at = datetime.fromtimestamp(claims_of(token)["iat"] + 1, UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 3, 2, 2, 0, tzinfo=UTC))


@dataclass
class Door:
    http: httpx.AsyncClient
    store: IntakeStore
    clock: Clock


def _auth(issuer: str, clock: Clock) -> SubmissionAuth:
    keys = JwksCache(issuer, refetch_interval=0)  # every unknown key id fetches again (rotation test)
    return SubmissionAuth(
        BearerVerifier(issuer, AUDIENCE, now=clock, keys=keys),
        load_client_map(CLIENTS_FILE, load_catalog()),
    )


@pytest.fixture
async def door(oidc_provider: OidcProvider, clock: Clock, tmp_path: Path) -> AsyncIterator[Door]:
    store = IntakeStore(tmp_path / "intake.db")
    app = FastAPI()
    intake = Intake(store, load_catalog(), default_calendar(), "")
    add_routes(app, intake, None, now=clock, auth=_auth(oidc_provider.issuer, clock))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
        yield Door(http, store, clock)


samples = SampleDossiers(seed=11)


def land_transfer(channel: str = "counter") -> dict[str, Any]:
    return samples.land_transfer("TD-12-345", samples.person(), 120.5) | {"channel": channel}


def marriage(channel: str = "online") -> dict[str, Any]:
    return samples.marriage() | {"channel": channel}


async def submit(door: Door, dossier: dict[str, Any], token: str | None, key: str = "k-1") -> httpx.Response:
    headers = {"Idempotency-Key": key}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await door.http.post("/dossiers", json=dossier, headers=headers)


def one_sentence(answer: httpx.Response) -> str:
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail
    return detail


async def test_no_token_is_401_with_a_bearer_challenge(door: Door) -> None:
    answer = await submit(door, land_transfer(), None)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in one_sentence(answer)
    assert door.store.outbox.size() == 0


async def test_garbage_token_is_401(door: Door) -> None:
    for token in ("not-a-jwt", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "a.b.c"):
        answer = await submit(door, land_transfer(), token)
        assert answer.status_code == 401, token
        assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
        one_sentence(answer)
    assert door.store.outbox.size() == 0


async def test_counter_client_on_counter_is_accepted_and_named_in_the_event(
    door: Door, oidc_provider: OidcProvider
) -> None:
    token = oidc_provider.client_token("counter-app")
    door.clock.set_within(token)
    answer = await submit(door, land_transfer("counter"), token)
    assert answer.status_code == 201, answer.text
    [(_, record)] = door.store.outbox.pending()
    event = parse_event(record.value, record.headers)
    assert isinstance(event, DossierReceived)
    assert event.data.submitted_by == "counter-app"
    assert str(event.dossier_id) == answer.json()["dossier_id"]


async def test_expired_token_is_401(door: Door, oidc_provider: OidcProvider) -> None:
    token = oidc_provider.client_token("counter-app")
    door.clock.at = datetime.fromtimestamp(claims_of(token)["exp"], UTC) + timedelta(
        seconds=DEFAULT_LEEWAY_S + 1
    )
    answer = await submit(door, land_transfer("counter"), token)
    assert answer.status_code == 401
    assert "expired" in one_sentence(answer)
    assert door.store.outbox.size() == 0


async def test_portal_client_may_not_use_the_counter_channel(door: Door, oidc_provider: OidcProvider) -> None:
    token = oidc_provider.client_token("online-portal")
    door.clock.set_within(token)
    answer = await submit(door, land_transfer("counter"), token)
    assert answer.status_code == 403
    assert "counter channel" in one_sentence(answer)
    assert door.store.outbox.size() == 0
    online = await submit(door, land_transfer("online"), token, key="k-2")
    assert online.status_code == 201, online.text


async def test_provincial_client_only_for_its_procedures(door: Door, oidc_provider: OidcProvider) -> None:
    token = oidc_provider.client_token("provincial-one-stop")
    door.clock.set_within(token)
    land = await submit(door, land_transfer("online"), token)
    assert land.status_code == 403
    assert "9.900001" in one_sentence(land)
    allowed = await submit(door, marriage("counter"), token, key="k-2")
    assert allowed.status_code == 201, allowed.text
    [(_, record)] = door.store.outbox.pending()
    event = parse_event(record.value, record.headers)
    assert isinstance(event, DossierReceived) and event.data.submitted_by == "provincial-one-stop"


async def test_token_of_another_issuer_is_401(door: Door, oidc_provider: OidcProvider) -> None:
    if oidc_provider.other_issuer is None:
        pytest.skip("the configured provider names no second issuer (LIENTHONG_TEST_OIDC_OTHER_ISSUER)")
    token = oidc_provider.client_token("counter-app", issuer=oidc_provider.other_issuer)
    assert claims_of(token)["azp"] == "counter-app"  # the same client id, secret and audience
    door.clock.set_within(token)
    answer = await submit(door, land_transfer("counter"), token)
    assert answer.status_code == 401
    one_sentence(answer)
    assert door.store.outbox.size() == 0


def _admin_token(oidc_provider: OidcProvider) -> str:
    local = oidc_provider.local
    assert local is not None
    answer = httpx.post(
        local.token_endpoint("master"),
        data={
            "grant_type": "password",
            "client_id": "admin-cli",
            "username": "admin",
            "password": local.admin_password,
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def _add_signing_key(oidc_provider: OidcProvider) -> None:
    """A new RSA key of higher priority in the realm: the provider signs with it from now on."""
    assert oidc_provider.local is not None
    admin = {"Authorization": f"Bearer {_admin_token(oidc_provider)}"}
    base = f"{oidc_provider.local.base_url}/admin/realms/lienthong"
    realm_id = httpx.get(base, headers=admin, timeout=10).json()["id"]
    created = httpx.post(
        f"{base}/components",
        headers=admin,
        json={
            "name": "rotated",
            "providerId": "rsa-generated",
            "providerType": "org.keycloak.keys.KeyProvider",
            "parentId": realm_id,
            "config": {"priority": ["1000"], "keySize": ["2048"], "active": ["true"], "enabled": ["true"]},
        },
        timeout=10,
    )
    assert created.status_code == 201, created.text


async def test_a_rotated_signing_key_is_followed_without_restart(
    door: Door, oidc_provider: OidcProvider
) -> None:
    if oidc_provider.local is None:
        pytest.skip("rotating keys needs the admin API of the provider this session started")
    before = oidc_provider.client_token("counter-app")
    door.clock.set_within(before)
    assert (await submit(door, land_transfer(), before, key="before")).status_code == 201
    _add_signing_key(oidc_provider)
    after = oidc_provider.client_token("counter-app")
    old_kid = json.loads(base64.urlsafe_b64decode(before.split(".")[0] + "=="))["kid"]
    new_kid = json.loads(base64.urlsafe_b64decode(after.split(".")[0] + "=="))["kid"]
    assert new_kid != old_kid
    door.clock.set_within(after)
    answer = await submit(door, land_transfer(), after, key="after")
    assert answer.status_code == 201, answer.text


# -- intake's own wiring (settings), on the real provider ------------------------------------------


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[IntakeSettings]:
    yield IntakeSettings(data_dir=tmp_path, bootstrap_servers="127.0.0.1:1")


async def test_intake_settings_turn_the_check_on(
    settings: IntakeSettings, oidc_provider: OidcProvider, clock: Clock
) -> None:
    token = oidc_provider.client_token("counter-app")
    clock.set_within(token)
    configured = settings.model_copy(
        update={"oidc_issuer": oidc_provider.issuer, "oidc_clients_file": CLIENTS_FILE}
    )
    app = build_app(configured, now=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
        refused = await http.post("/dossiers", json=land_transfer(), headers={"Idempotency-Key": "a"})
        accepted = await http.post(
            "/dossiers",
            json=land_transfer(),
            headers={"Idempotency-Key": "b", "Authorization": f"Bearer {token}"},
        )
    assert refused.status_code == 401
    assert accepted.status_code == 201, accepted.text


def test_without_an_issuer_intake_warns_once_that_submissions_are_open(
    settings: IntakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="services.intake.auth"):
        build_app(settings)
    warnings = [r.getMessage() for r in caplog.records if r.name == "services.intake.auth"]
    assert len(warnings) == 1 and "not authenticated" in warnings[0]

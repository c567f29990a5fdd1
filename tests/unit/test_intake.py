"""Intake's HTTP contract: one dossier per Idempotency-Key, and a clear 4xx for every malformed dossier."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from schemas.catalog import load_catalog
from schemas.events import DossierReceived, parse_event
from schemas.workdays import default_calendar
from services.intake.app import Intake, add_routes
from services.intake.store import IntakeStore
from services.stack.samples import SampleDossiers


@pytest.fixture
def store(tmp_path: Path) -> IntakeStore:
    return IntakeStore(tmp_path / "intake.db")


@pytest.fixture
async def client(store: IntakeStore) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    add_routes(app, Intake(store, load_catalog(), default_calendar(), ""), relay=None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
        yield http


def land_transfer() -> dict[str, Any]:
    samples = SampleDossiers(seed=7)
    return samples.land_transfer("TD-12-345", samples.person(), 120.5)


async def test_valid_dossier_gets_code_due_date_and_one_event(
    client: httpx.AsyncClient, store: IntakeStore
) -> None:
    answer = await client.post("/dossiers", json=land_transfer(), headers={"Idempotency-Key": "k-1"})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["dossier_code"].startswith("LT-") and body["status"] == 2
    assert body["due_date"].count("/") == 2  # dd/mm/yyyy, as on the receipt
    records = store.outbox.pending()
    assert len(records) == 1
    event = parse_event(records[0][1].value, records[0][1].headers)
    assert isinstance(event, DossierReceived) and str(event.dossier_id) == body["dossier_id"]
    assert records[0][1].key == body["dossier_id"].encode()


async def test_same_key_makes_one_dossier_even_after_restart(tmp_path: Path, store: IntakeStore) -> None:
    dossier = land_transfer()
    answers = []
    for _ in range(2):  # two app instances over the same store: a restart
        app = FastAPI()
        add_routes(
            app, Intake(IntakeStore(tmp_path / "intake.db"), load_catalog(), default_calendar(), ""), None
        )
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://i") as http:
            answers.append(await http.post("/dossiers", json=dossier, headers={"Idempotency-Key": "same"}))
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[0].json() == answers[1].json()
    assert answers[1].headers["Idempotent-Replayed"] == "true"
    assert store.outbox.size() == 1


async def test_same_key_with_another_dossier_is_refused(client: httpx.AsyncClient) -> None:
    await client.post("/dossiers", json=land_transfer(), headers={"Idempotency-Key": "k"})
    other = SampleDossiers(seed=99).marriage()
    answer = await client.post("/dossiers", json=other, headers={"Idempotency-Key": "k"})
    assert answer.status_code == 422 and "already used" in answer.json()["detail"]


def _mutate(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    dossier = copy.deepcopy(land_transfer())
    change(dossier)
    return dossier


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(dossier: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = dossier
        for part in parents:
            node = node[part]
        node[last] = value

    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(dossier: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = dossier
        for part in parents:
            node = node[part]
        del node[last]

    return change


def _same_parties(dossier: dict[str, Any]) -> None:
    dossier["form"]["transferee"] = dossier["form"]["transferor"]


# (name, body bytes or JSON, expected status, a field the answer must name)
MALFORMED: list[tuple[str, bytes | dict[str, Any], int, str]] = [
    ("body_not_json", b"{not json", 422, "<body>"),
    ("body_is_a_list", b"[1, 2]", 422, "<body>"),
    ("procedure_code_missing", _mutate(_drop("procedure_code")), 422, "procedure_code"),
    ("procedure_code_unknown", _mutate(_set("procedure_code", "1.999999")), 422, "procedure_code"),
    ("applicant_missing", _mutate(_drop("applicant")), 422, "applicant"),
    (
        "citizen_id_too_short",
        _mutate(_set("applicant.citizen_id", "07919012345")),
        422,
        "applicant.citizen_id",
    ),
    ("citizen_id_unknown_province", _mutate(_set("applicant.citizen_id", "999190123456")), 422, "citizen_id"),
    (
        "citizen_id_disagrees_with_birth_year",
        _mutate(_set("applicant.date_of_birth", "1971-01-01")),
        422,
        "applicant",
    ),
    ("full_name_empty", _mutate(_set("applicant.full_name", "  ")), 422, "applicant.full_name"),
    (
        "date_of_birth_not_a_date",
        _mutate(_set("applicant.date_of_birth", "14/03/1985")),
        422,
        "date_of_birth",
    ),
    ("channel_unknown", _mutate(_set("channel", "fax")), 422, "channel"),
    ("form_missing", _mutate(_drop("form")), 422, "form"),
    ("form_transferee_missing", _mutate(_drop("form.transferee")), 422, "form.transferee"),
    ("declared_value_negative", _mutate(_set("form.declared_value_vnd", -1)), 422, "form.declared_value_vnd"),
    (
        "declared_value_fractional",
        _mutate(_set("form.declared_value_vnd", 1.5)),
        422,
        "form.declared_value_vnd",
    ),
    ("transferor_is_transferee", _mutate(_same_parties), 422, "form"),
    ("parcel_id_malformed", _mutate(_set("form.parcel_id", "parcel 12")), 422, "form.parcel_id"),
    (
        "document_sha256_malformed",
        _mutate(
            _set(
                "documents",
                [{"name": "hd.pdf", "media_type": "application/pdf", "sha256": "x", "size_bytes": 10}],
            )
        ),
        422,
        "documents.0.sha256",
    ),
    ("unknown_top_level_field", _mutate(_set("citizen_password", "x")), 422, "citizen_password"),
    ("form_of_another_procedure", _mutate(_set("form", SampleDossiers(3).marriage()["form"])), 422, "form."),
]


@pytest.mark.parametrize(("name", "body", "status", "field"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_dossier_gets_a_clear_4xx_and_publishes_nothing(
    client: httpx.AsyncClient,
    store: IntakeStore,
    name: str,
    body: bytes | dict[str, Any],
    status: int,
    field: str,
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = await client.post(
        "/dossiers", content=content, headers={"Idempotency-Key": name, "Content-Type": "application/json"}
    )
    assert answer.status_code == status, answer.text
    errors = answer.json()["errors"]
    assert any(field in e["field"] for e in errors), errors
    assert store.outbox.size() == 0


async def test_every_wrong_field_is_named_at_once(client: httpx.AsyncClient) -> None:
    dossier = _mutate(_set("channel", "fax"))
    dossier["form"]["declared_value_vnd"] = -5
    answer = await client.post("/dossiers", json=dossier, headers={"Idempotency-Key": "many"})
    fields = {e["field"] for e in answer.json()["errors"]}
    assert {"channel", "form.declared_value_vnd"} <= fields


async def test_missing_idempotency_key_and_oversized_body_are_refused(
    client: httpx.AsyncClient, store: IntakeStore
) -> None:
    no_key = await client.post("/dossiers", json=land_transfer())
    assert no_key.status_code == 400 and "Idempotency-Key" in no_key.json()["detail"]
    huge = await client.post("/dossiers", content=b"x" * 300_000, headers={"Idempotency-Key": "big"})
    assert huge.status_code == 413
    assert store.outbox.size() == 0


async def test_errors_do_not_echo_personal_data(client: httpx.AsyncClient) -> None:
    dossier = _mutate(_set("applicant.date_of_birth", "1971-01-01"))
    answer = await client.post("/dossiers", json=dossier, headers={"Idempotency-Key": "pii"})
    assert dossier["applicant"]["citizen_id"] not in answer.text
    assert dossier["applicant"]["full_name"] not in answer.text


async def test_catalog_is_listed(client: httpx.AsyncClient) -> None:
    procedures = (await client.get("/procedures")).json()
    codes = {p["code"] for p in procedures}
    assert {"9.900001", "9.900003", "9.900005"} <= codes
    birth = next(p for p in procedures if p["code"] == "9.900003")
    assert next(s["id"] for s in birth["route"]) == "register_birth"

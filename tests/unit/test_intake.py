"""Intake's HTTP contract: one dossier per Idempotency-Key, and a clear 4xx for every malformed dossier."""

from __future__ import annotations

import copy
import json
import re
import unicodedata
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from connectors.land.sandbox.app import LandSandboxSettings
from connectors.land.sandbox.app import create_app as land_app
from schemas.catalog import load_catalog
from schemas.events import DossierReceived, parse_event
from schemas.examples.land_parcels import SEED_PARCELS
from schemas.forms import FORMS
from schemas.workdays import default_calendar
from services.intake.api import add_routes
from services.intake.intake import Intake
from services.intake.store import IntakeStore
from services.tools.stack.samples import SampleDossiers


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


# --- bodies that are no dossier, and the text and dates inside one -----------------------------


def _json(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def _with_literal(path: str, literal: bytes) -> bytes:
    """The land transfer with the value at ``path`` replaced by raw JSON text."""
    return _json(_mutate(_set(path, "@@literal@@"))).replace(b'"@@literal@@"', literal)


DEEP = b'{"procedure_code": "9.900001", "form": ' + b"[" * 1000 + b"]" * 1000 + b"}"

# (name, body, a sentence the refusal must say)
NOT_A_DOSSIER: list[tuple[str, bytes, str]] = [
    ("nested_1000_levels", DEEP, "nested deeper than 32 levels"),
    ("nested_33_levels", b'{"form": ' + b'{"a": ' * 33 + b"1" + b"}" * 33 + b"}", "nested deeper than 32"),
    ("nested_5000_levels", b"[" * 5000 + b"]" * 5000, "nested deeper than 32 levels"),
    ("duplicate_key", b'{"procedure_code": "9.900001", "procedure_code": "9.900005"}', "appears twice"),
    ("nan", _with_literal("form.area_m2", b"NaN"), "NaN and Infinity are not JSON"),
    ("infinity", _with_literal("form.area_m2", b"-Infinity"), "NaN and Infinity are not JSON"),
    ("number_beyond_a_double", _with_literal("form.area_m2", b"1e999"), "too large for JSON"),
    ("integer_of_5000_digits", _with_literal("form.declared_value_vnd", b"9" * 5000), "too large"),
    ("byte_order_mark", b"\xef\xbb\xbf" + _json(land_transfer()), "byte order mark"),
    ("invalid_utf8", _json(land_transfer()).replace(b"TD-12-345", b"TD-12-\xff345"), "not valid UTF-8"),
    ("utf16", json.dumps(land_transfer()).encode("utf-16"), "not valid"),
    ("lone_surrogate", _with_literal("applicant.full_name", b'"An \\ud800"'), "unpaired surrogate"),
    ("empty", b"", "the body is empty"),
    ("truncated", _json(land_transfer())[:-1], "not valid JSON"),
    ("a_string", b'"9.900001"', "must be a JSON object (the dossier), not a string"),
    ("null", b"null", "must be a JSON object (the dossier), not null"),
]


@pytest.mark.parametrize(("name", "body", "sentence"), NOT_A_DOSSIER, ids=[n[0] for n in NOT_A_DOSSIER])
async def test_a_body_that_is_no_dossier_gets_a_422_saying_why(
    client: httpx.AsyncClient, store: IntakeStore, name: str, body: bytes, sentence: str
) -> None:
    answer = await client.post(
        "/dossiers", content=body, headers={"Idempotency-Key": name, "Content-Type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    assert sentence in answer.json()["detail"]
    assert answer.json()["errors"][0]["field"] == "<body>"
    assert store.outbox.size() == 0


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
        "text/json",
    ],
)
async def test_only_json_is_taken(
    client: httpx.AsyncClient, store: IntakeStore, content_type: str | None
) -> None:
    headers = {"Idempotency-Key": f"ct-{content_type}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    answer = await client.post("/dossiers", content=_json(land_transfer()), headers=headers)
    assert answer.status_code == 415, answer.text
    assert "application/json" in answer.json()["detail"] or "UTF-8" in answer.json()["detail"]
    assert store.outbox.size() == 0


async def test_json_with_its_utf8_charset_is_taken(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/dossiers",
        content=_json(land_transfer()),
        headers={"Idempotency-Key": "charset", "Content-Type": "Application/JSON; charset=UTF-8"},
    )
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize("key", ["k" * 201, "khóa-1", "k\x00ey"], ids=["too_long", "not_ascii", "control"])
async def test_an_idempotency_key_that_is_no_key_is_a_400_not_a_validation_dump(
    client: httpx.AsyncClient, key: str
) -> None:
    answer = await client.post(
        "/dossiers", json=land_transfer(), headers={b"Idempotency-Key": key.encode("utf-8")}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"].startswith("the Idempotency-Key header must be")


async def test_one_nul_in_a_name_refuses_the_dossier_before_any_agency_sees_it(
    client: httpx.AsyncClient, store: IntakeStore
) -> None:
    dossier = land_transfer()
    dossier["form"]["transferee"]["full_name"] = "Trần Thị\x00 Bình"
    answer = await client.post("/dossiers", json=dossier, headers={"Idempotency-Key": "nul"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == "the dossier has 1 invalid field"
    [error] = answer.json()["errors"]
    assert error["field"] == "form.transferee.full_name"
    assert "a control character (U+0000)" in error["message"]
    assert "Bình" not in answer.text
    assert store.outbox.size() == 0  # no DossierReceived: no agency registers half of it


async def test_a_name_typed_with_combining_marks_reaches_the_agencies_precomposed(
    client: httpx.AsyncClient, store: IntakeStore
) -> None:
    dossier = land_transfer()
    dossier["form"]["transferee"]["full_name"] = unicodedata.normalize("NFD", "Trần Thị Bình")
    answer = await client.post("/dossiers", json=dossier, headers={"Idempotency-Key": "nfd"})
    assert answer.status_code == 201, answer.text
    event = parse_event(store.outbox.pending()[0][1].value, store.outbox.pending()[0][1].headers)
    assert isinstance(event, DossierReceived)
    transferee = event.data.form["transferee"]
    assert isinstance(transferee, dict) and transferee["full_name"] == "Trần Thị Bình"


def _at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


async def _birth_at(tmp_path: Path, now: datetime, born: date) -> httpx.Response:
    dossier = SampleDossiers(seed=3).birth()
    dossier["form"]["child_date_of_birth"] = born.isoformat()
    app = FastAPI()
    intake = Intake(IntakeStore(tmp_path / "intake.db"), load_catalog(), default_calendar(), "")
    add_routes(app, intake, relay=None, now=_at(now))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://i") as http:
        return await http.post("/dossiers", json=dossier, headers={"Idempotency-Key": born.isoformat()})


async def test_a_child_born_tomorrow_in_vietnam_is_refused_one_born_today_is_not(tmp_path: Path) -> None:
    # 23:30 UTC on 10 March is 06:30 on 11 March in Vietnam: the 11th is today, the 12th tomorrow.
    now = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)
    assert (await _birth_at(tmp_path, now, date(2026, 3, 11))).status_code == 201
    refused = await _birth_at(tmp_path, now, date(2026, 3, 12))
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["errors"]
    assert error["field"] == "form.child_date_of_birth"
    assert "after today (2026-03-11 in Vietnam)" in error["message"]


# --- the OpenAPI document and the examples ------------------------------------------------------


async def test_openapi_documents_the_dossier_per_procedure_and_every_refusal(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    components = document["components"]["schemas"]
    operation = document["paths"]["/dossiers"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    mapping = body["discriminator"]["mapping"]
    catalog = load_catalog()
    assert set(mapping) == {p.code for p in catalog.procedures}
    for procedure in catalog.procedures:
        submission = components[mapping[procedure.code].rsplit("/", 1)[-1]]
        assert procedure.code in submission["properties"]["procedure_code"]["enum"]
        form = components[submission["properties"]["form"]["$ref"].rsplit("/", 1)[-1]]
        assert form["title"] == FORMS[procedure.form_kind].__name__
    assert {"$ref": mapping["9.900001"]} in body["oneOf"]
    for status in ("400", "413", "415", "422"):
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Problem"}
    assert set(components["Problem"]["properties"]) == {"detail", "errors"}
    assert operation["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/DossierAccepted"
    )
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document)))
    assert refs <= set(components), refs - set(components)


@pytest.mark.parametrize("code", [p.code for p in load_catalog().procedures])
async def test_every_procedure_has_an_example_intake_accepts(
    client: httpx.AsyncClient, store: IntakeStore, code: str
) -> None:
    procedure = (await client.get(f"/procedures/{code}")).json()
    example = (await client.get(procedure["example"])).json()
    assert example["procedure_code"] == code
    answer = await client.post("/dossiers", json=example["submission"], headers={"Idempotency-Key": code})
    assert answer.status_code == 201, answer.text
    assert store.outbox.size() == 1


@pytest.mark.parametrize("code", ["9.900001", "9.900002"], ids=["transfer", "first_certificate"])
async def test_a_land_example_uses_a_parcel_the_land_sandbox_knows_and_its_holder(
    client: httpx.AsyncClient, code: str
) -> None:
    example = (await client.get(f"/procedures/{code}/example")).json()
    form = example["submission"]["form"]
    holder = form["transferor"] if code == "9.900001" else form["applicant"]
    parcel = next(p for p in SEED_PARCELS if p["parcel_id"] == form["parcel_id"])
    assert (
        parcel["owner_citizen_id"] == holder["citizen_id"] == example["submission"]["applicant"]["citizen_id"]
    )
    assert parcel["area_m2"] == form["area_m2"]
    assert parcel["has_certificate"] is (code == "9.900001")
    assert {p["parcel_id"] for p in example["sandbox_parcels"]} == {p["parcel_id"] for p in SEED_PARCELS}
    assert any("GET /api/v1/parcels/{parcel_id}" in note for note in example["notes"])


async def test_the_land_sandbox_checks_the_transfer_example_as_it_is() -> None:
    form = (await _example("9.900001"))["submission"]["form"]
    sandbox = land_app(settings=LandSandboxSettings(job_seconds=0.0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url="http://land") as http:
        job = await http.post(
            "/api/v1/transfer-checks",
            json={
                "parcel_id": form["parcel_id"],
                "transferor_citizen_id": form["transferor"]["citizen_id"],
                "transferee_citizen_id": form["transferee"]["citizen_id"],
                "transferee_name": form["transferee"]["full_name"],
                "declared_value_vnd": form["declared_value_vnd"],
                "area_m2": form["area_m2"],
            },
            headers={"Idempotency-Key": "example"},
        )
        assert job.status_code == 202, job.text
        result = (await http.get(job.json()["poll"])).json()
    assert result["status"] == "succeeded", result["reason"]


async def _example(code: str) -> dict[str, Any]:
    app = FastAPI()
    add_routes(app, Intake(IntakeStore(":memory:"), load_catalog(), default_calendar(), ""), relay=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://i") as http:
        example: dict[str, Any] = (await http.get(f"/procedures/{code}/example")).json()
    return example


async def test_an_unknown_procedure_is_a_404_with_a_sentence(client: httpx.AsyncClient) -> None:
    for path in ("/procedures/1.999999", "/procedures/1.999999/example"):
        answer = await client.get(path)
        assert answer.status_code == 404
        assert answer.json()["detail"] == "no procedure has this code; GET /procedures lists them"

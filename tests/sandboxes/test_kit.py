"""The shared sandbox kit: fault injection, idempotency keys, records, store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from connectors.sandbox_kit.admin import install_sandbox_kit
from connectors.sandbox_kit.faults import FaultInjector, FaultSettings, FaultUpdate
from connectors.sandbox_kit.idempotency import IdempotencyKeys
from connectors.sandbox_kit.store import Store
from tests.sandboxes.helpers import asgi_client, eventually, records

SCHEMA = "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL);"


def make_app(faults: FaultSettings | None = None, *, handler_delay_s: float = 0.0) -> FastAPI:
    store = Store(":memory:", SCHEMA)
    keys = IdempotencyKeys(store)
    app = FastAPI()
    install_sandbox_kit(app, name="kit", store=store, injector=FaultInjector(faults))

    @app.post("/items")
    async def create(request: Request) -> Response:
        async def effect() -> Response:
            await asyncio.sleep(handler_delay_s)  # widens the race window of concurrent duplicates
            name = (await request.json())["name"]
            item_id = store.execute("INSERT INTO items (name) VALUES (?)", (name,)).lastrowid
            return JSONResponse({"id": item_id, "name": name}, status_code=201)

        return await keys.run(request, effect)

    return app


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(make_app()) as client:
        yield client


async def test_health_and_records_list_own_tables(http: httpx.AsyncClient) -> None:
    assert (await http.get("/health")).json() == {"status": "ok", "sandbox": "kit"}
    await http.post("/items", json={"name": "a"})
    assert [row["name"] for row in await records(http, "items")] == ["a"]
    assert (await http.get("/_sandbox/records")).json()["counts"]["items"] == 1
    assert (await http.get("/_sandbox/records/no_such_table")).status_code == 404


async def test_same_key_same_body_replays_without_a_second_record(http: httpx.AsyncClient) -> None:
    first = await http.post("/items", json={"name": "a"}, headers={"Idempotency-Key": "k1"})
    again = await http.post("/items", json={"name": "a"}, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(await records(http, "items")) == 1


async def test_key_order_in_json_does_not_make_a_different_body(http: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "k-order", "Content-Type": "application/json"}
    await http.post("/items", content=b'{"name": "a", "x": 1}', headers=headers)
    again = await http.post("/items", content=b'{"x": 1, "name": "a"}', headers=headers)
    assert again.status_code == 201
    assert len(await records(http, "items")) == 1


async def test_same_key_different_body_is_refused(http: httpx.AsyncClient) -> None:
    await http.post("/items", json={"name": "a"}, headers={"Idempotency-Key": "k2"})
    other = await http.post("/items", json={"name": "b"}, headers={"Idempotency-Key": "k2"})
    assert other.status_code == 422
    assert other.json()["error"] == "IDEMPOTENCY_KEY_REUSED"
    assert "different request body" in other.json()["message"]
    assert len(await records(http, "items")) == 1


async def test_concurrent_duplicates_run_once() -> None:
    async with asgi_client(make_app(handler_delay_s=0.1)) as http:
        answers = await asyncio.gather(
            *(http.post("/items", json={"name": "a"}, headers={"Idempotency-Key": "race"}) for _ in range(5))
        )
        assert {a.status_code for a in answers} == {201}
        assert len({a.json()["id"] for a in answers}) == 1
        assert len(await records(http, "items")) == 1


async def test_without_a_key_every_request_runs(http: httpx.AsyncClient) -> None:
    await http.post("/items", json={"name": "a"})
    await http.post("/items", json={"name": "a"})
    assert len(await records(http, "items")) == 2


async def test_failure_rate_one_answers_503_but_health_and_admin_stay_up() -> None:
    async with asgi_client(make_app(FaultSettings(failure_rate=1.0))) as http:
        failed = await http.post("/items", json={"name": "a"})
        assert failed.status_code == 503
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/_sandbox/faults")).json()["failure_rate"] == 1.0
        assert await records(http, "items") == []


async def test_error_status_can_be_429_with_retry_after(http: httpx.AsyncClient) -> None:
    await http.put("/_sandbox/faults", json={"failure_rate": 1, "error_status": 429})
    answer = await http.post("/items", json={"name": "a"})
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "1"


async def test_seeded_failure_rate_is_deterministic_and_about_right() -> None:
    def pattern() -> list[int]:
        injector = FaultInjector(FaultSettings(failure_rate=0.3, seed=42))
        return [int(injector.decide().value == "fail") for _ in range(1000)]

    first, second = pattern(), pattern()
    assert first == second
    assert 230 < sum(first) < 370


async def test_latency_is_added_to_calls_but_not_to_health(http: httpx.AsyncClient) -> None:
    await http.put("/_sandbox/faults", json={"latency_ms": 200})
    started = time.monotonic()
    await http.post("/items", json={"name": "a"})
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    await http.get("/health")
    assert time.monotonic() - started < 0.2


async def test_down_for_a_while_then_recovers(http: httpx.AsyncClient) -> None:
    settings = (await http.put("/_sandbox/faults", json={"down_for_s": 0.3})).json()
    assert settings["down_until"] is not None
    down = await http.post("/items", json={"name": "a"})
    assert down.status_code == 503
    assert down.json()["error"] == "down_for_maintenance"
    assert int(down.headers["retry-after"]) >= 1

    async def up() -> bool:
        return (await http.post("/items", json={"name": "b"})).status_code == 201

    await eventually(up, within_s=3)
    assert [row["name"] for row in await records(http, "items")] == ["b"]


async def test_malformed_reply_is_200_garbage_without_side_effect(http: httpx.AsyncClient) -> None:
    await http.put("/_sandbox/faults", json={"malformed_rate": 1})
    answer = await http.post("/items", json={"name": "a"})
    assert answer.status_code == 200
    with pytest.raises(ValueError):
        answer.json()
    assert await records(http, "items") == []


async def test_put_merges_and_delete_resets(http: httpx.AsyncClient) -> None:
    await http.put("/_sandbox/faults", json={"latency_ms": 5})
    merged = (await http.put("/_sandbox/faults", json={"failure_rate": 0.5})).json()
    assert (merged["latency_ms"], merged["failure_rate"]) == (5, 0.5)
    assert (await http.put("/_sandbox/faults", json={"failure_rate": 2})).status_code == 422
    reset = (await http.delete("/_sandbox/faults")).json()
    assert reset == FaultSettings().model_dump(mode="json")
    assert (await http.post("/items", json={"name": "a"})).status_code == 201


def test_injector_update_down_for_zero_means_up() -> None:
    injector = FaultInjector()
    assert injector.update(FaultUpdate(down_for_s=60)).is_down()
    assert not injector.update(FaultUpdate(down_for_s=0)).is_down()


def test_store_counts_and_sequences() -> None:
    store = Store(":memory:", SCHEMA)
    store.execute("INSERT INTO items (name) VALUES ('x')")
    with store.transaction() as conn:
        assert [Store.next_sequence(conn, "s") for _ in range(3)] == [1, 2, 3]
    assert store.counts()["items"] == 1
    with pytest.raises(KeyError):
        store.records("items; DROP TABLE items")

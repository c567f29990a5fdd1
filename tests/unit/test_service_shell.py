"""The shell every service runs in: operations endpoints, the metric catalogue primed at zero, the
tracker's closing counter counted once, and W3C trace context through FastStream when tracing is on."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY, CollectorRegistry

from schemas.catalog import load_catalog
from schemas.envelope import CE_TRACEPARENT
from services.intake.app import IntakeSettings
from services.intake.app import build_app as build_intake
from services.runtime.consume.consumer import Context
from services.runtime.observe.metrics import Service, build_metrics
from services.runtime.observe.tracing import traced_sender, use_tracer_provider
from services.runtime.shell.service import (
    LoopHealth,
    build_service_app,
    instrument_broker,
    loop_name,
    supervised,
)
from services.runtime.storage.database import Connection
from services.runtime.storage.outbox import OutgoingRecord
from services.tracker import projection
from services.tracker.gauges import counting_closures, publish, snapshot
from services.tracker.store import TrackerStore
from services.tracker.views import TrackerViews
from tests.sandboxes.helpers import eventually
from tests.unit.test_tracker import MONDAY_9AM, closed, local, receive

LAND_TRANSFER = "9.900001"


async def test_every_service_serves_health_ready_metrics_and_its_asyncapi_document(tmp_path: Path) -> None:
    app = build_intake(IntakeSettings(data_dir=tmp_path, bootstrap_servers="127.0.0.1:1"))
    # The broker is never started (no lifespan): the endpoints answer without Kafka.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
        assert (await http.get("/health")).json() == {"status": "ok", "service": "intake"}
        ready = await http.get("/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "starting"
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        assert "# TYPE lienthong_dossiers_received_total counter" in metrics.text
        document = (await http.get("/asyncapi.json")).json()
        assert document["asyncapi"].startswith("3.")
        assert {c["address"] for c in document["channels"].values()} == {"dossier.received"}


async def test_a_closing_counts_once_however_often_it_arrives(tmp_path: Path) -> None:
    metrics = build_metrics(CollectorRegistry())
    store = TrackerStore(tmp_path / "tracker.db")
    handlers = counting_closures(projection.HANDLERS, store, metrics)
    received = receive(LAND_TRANSFER)
    first = closed(received, local(12, 2, 10), on_time=True)
    again = closed(received, local(12, 2, 11), on_time=True)  # a second closing event, new id
    context: Context[Any] = Context(store, cast(Any, None))
    for event in (received, first, first, again):
        effect = await handlers[type(event)](event, context)
        store.commit(str(event.event_id), effect.emitted, effect.write)  # a duplicate id: not applied

    def count() -> float:
        value = metrics.registry.get_sample_value(
            "lienthong_dossiers_closed_total",
            {"procedure": LAND_TRANSFER, "result": "completed", "on_time": "true"},
        )
        return value or 0.0

    assert count() == 1.0

    other = receive(LAND_TRANSFER)
    await handlers[type(other)](other, context)
    store.commit(str(other.event_id), [], projection.write_for(other))
    failing = closed(other, local(12, 3, 10), on_time=True)
    effect = await handlers[type(failing)](failing, context)
    assert effect.write is not None
    inner = effect.write

    def broken(conn: Connection) -> None:
        inner(conn)
        raise RuntimeError("the disk is full")

    with pytest.raises(RuntimeError):
        store.commit(str(failing.event_id), [], broken)
    assert count() == 1.0, "a rolled-back closing is not counted"


async def test_the_dossier_gauges_count_open_dossiers_by_procedure_and_state(tmp_path: Path) -> None:
    metrics = build_metrics(CollectorRegistry())
    store = TrackerStore(tmp_path / "tracker.db")
    for event in (receive(LAND_TRANSFER), receive(LAND_TRANSFER)):
        store.commit(str(event.event_id), [], projection.write_for(event))
    views = TrackerViews(store.conn, load_catalog(), now=lambda: MONDAY_9AM)
    publish(snapshot(views), metrics)
    sample = metrics.registry.get_sample_value
    assert sample("lienthong_dossiers", {"procedure": LAND_TRANSFER, "state": "in_progress"}) == 2.0
    assert sample("lienthong_dossiers", {"procedure": LAND_TRANSFER, "state": "overdue"}) == 0.0
    assert sample("lienthong_legs_open", {"agency": "tax", "state": "requested"}) == 0.0
    assert sample("lienthong_apology_slips_due", {"procedure": LAND_TRANSFER}) == 0.0


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_tracer_provider(provider)
    try:
        yield exporter
    finally:
        use_tracer_provider(None)


async def test_with_tracing_on_messages_carry_w3c_trace_context_and_make_spans(
    spans: InMemorySpanExporter,
) -> None:
    broker = KafkaBroker("127.0.0.1:1")
    seen: list[dict[str, Any]] = []

    @broker.subscriber("traced.topic", group_id="traced")
    async def handle(body: object, message: KafkaMessage) -> None:
        seen.append(dict(message.headers))

    instrument_broker(broker, "test")
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(b"{}", "traced.topic")
        # The outbox relay publishes later, outside any span: the record's envelope trace continues.
        origin = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

        async def send(record: OutgoingRecord) -> Any:
            await test_broker.publish(record.value, record.topic, headers=record.headers)
            return None

        await traced_sender(send)(OutgoingRecord("traced.topic", b"k", b"{}", {CE_TRACEPARENT: origin}))

    assert len(seen) == 2
    assert all("traceparent" in headers for headers in seen)
    assert seen[1]["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    finished = spans.get_finished_spans()
    assert finished, "publishing and consuming produced spans"
    assert {s.context.trace_id for s in finished} >= {int("0af7651916cd43dd8448eb211c80319c", 16)}


def test_tracing_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    broker = KafkaBroker("127.0.0.1:1")
    instrument_broker(broker, "test")
    names = {type(m).__name__ for m in broker.config.broker_middlewares}
    assert "KafkaPrometheusMiddleware" in names and "KafkaTelemetryMiddleware" not in names


class Flaky:
    """A background loop that dies on its first run (a partition revoked mid-record) and then stays up."""

    def __init__(self) -> None:
        self.runs = 0
        self.release = asyncio.Event()

    async def run(self) -> None:
        self.runs += 1
        if self.runs == 1:
            raise RuntimeError("No current assignment for partition")
        await self.release.wait()


async def test_a_background_loop_that_dies_is_restarted_and_counted() -> None:
    flaky = Flaky()
    health = LoopHealth(loop_name(flaky.run))
    deaths: list[str] = []
    task = asyncio.create_task(supervised(flaky.run, health, on_death=deaths.append, first_backoff_s=0.01))
    try:

        async def restarted() -> bool:
            return flaky.runs == 2 and not health.down

        await eventually(restarted, within_s=5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert health.name == "Flaky.run" and deaths == ["Flaky.run"] and health.deaths == 1
    assert "No current assignment" in health.last_error


async def test_readiness_names_a_background_loop_that_is_down_and_the_restart_is_in_metrics() -> None:
    flaky = Flaky()
    broker = KafkaBroker("127.0.0.1:1")
    app = build_service_app("test", broker, kind=Service.CONNECTOR, loops=[flaky.run])
    sample = ("lienthong_background_loop_restarts_total", {"service": "connector", "loop": "Flaky.run"})
    before = REGISTRY.get_sample_value(*sample) or 0.0
    transport = httpx.ASGITransport(app=app)
    async with (
        TestKafkaBroker(broker),
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as http,
    ):

        async def down() -> bool:
            answer = await http.get("/ready")
            return answer.status_code == 503 and "Flaky.run is down" in answer.json()["reason"]

        await eventually(down, within_s=5)

        async def back() -> bool:
            return (await http.get("/ready")).status_code == 200

        await eventually(back, within_s=10)
    assert REGISTRY.get_sample_value(*sample) == before + 1

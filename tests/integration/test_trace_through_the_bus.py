"""One dossier is one trace, from ``POST /dossiers`` through the router, the connector, the router
again and the tracker: the services run in this process on the real broker (so an in-memory
OpenTelemetry exporter sees every span), the civil-status registry sandbox over real HTTP.

Every hop goes out through the outbox relay's own producer, outside any handler's span. Before, the
relay wrote no ``traceparent`` header, so each consumer started a trace of its own at the first hop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from connectors.civil_status.sandbox.app import create_app as civil_status_registry
from schemas.agencies import Agency
from schemas.topics import all_topics, requests_topic
from services.connector.app import build_app as build_connector
from services.connector.settings import ConnectorSettings, HostSettings
from services.intake.app import IntakeSettings
from services.intake.app import build_app as build_intake
from services.router.app import RouterSettings
from services.router.app import build_app as build_router
from services.runtime.observe.tracing import use_tracer_provider
from services.runtime.shell.topics_admin import ensure_topics
from services.tools.localkafka.process import free_port
from services.tools.stack.samples import SampleDossiers
from services.tracker.app import TrackerSettings
from services.tracker.app import build_app as build_tracker
from tests.sandboxes.helpers import eventually


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


@contextlib.asynccontextmanager
async def serving(app: FastAPI, port: int) -> AsyncIterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: _started(server), within_s=30)
        yield
    finally:
        server.should_exit = True
        await task


async def _started(server: uvicorn.Server) -> bool:
    return server.started


def handled(span: ReadableSpan) -> tuple[str, str] | None:
    """(topic, consumer group) of the runtime's span around one record's handling, else None.
    FastStream's own consumer spans cover a whole poll and start a trace per poll, linked to each
    record's; the runtime's continue each record's trace."""
    attributes = span.attributes or {}
    if span.kind is not SpanKind.CONSUMER or not span.name.endswith(" handle"):
        return None
    return str(attributes["messaging.destination.name"]), str(attributes["messaging.consumer.group.name"])


async def test_one_dossier_is_one_trace_through_every_service(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    await ensure_topics(kafka_bootstrap, all_topics(topic_prefix))
    registry_port = free_port()
    monkeypatch.setenv("LIENTHONG_CIVIL_STATUS_URL", f"http://127.0.0.1:{registry_port}")
    common: dict[str, Any] = {
        "bootstrap_servers": kafka_bootstrap,
        "topic_prefix": topic_prefix,
        "data_dir": tmp_path,
    }
    intake = build_intake(IntakeSettings(**common))
    tracker = build_tracker(TrackerSettings(**common, staff_sign_in="off"))
    apps = [
        tracker,
        build_router(RouterSettings(**common)),
        build_connector(
            ConnectorSettings(
                **common,
                agency=Agency.CIVIL_STATUS,
                connector_host=HostSettings(poll_interval_s=0.2),
            )
        ),
        intake,
    ]
    async with contextlib.AsyncExitStack() as running:
        await running.enter_async_context(
            serving(civil_status_registry(str(tmp_path / "civil.db")), registry_port)
        )
        for app in apps:
            await running.enter_async_context(app.router.lifespan_context(app))
        to_intake = httpx.AsyncClient(transport=httpx.ASGITransport(app=intake), base_url="http://intake")
        to_tracker = httpx.AsyncClient(transport=httpx.ASGITransport(app=tracker), base_url="http://tracker")
        running.push_async_callback(to_intake.aclose)
        running.push_async_callback(to_tracker.aclose)
        answer = await to_intake.post(
            "/dossiers", json=SampleDossiers(seed=11).marriage(), headers={"Idempotency-Key": "trace-1"}
        )
        assert answer.status_code == 201, answer.text
        dossier_id = answer.json()["dossier_id"]

        async def closed() -> bool:
            found = await to_tracker.get(f"/dossiers/{dossier_id}")
            return found.status_code == 200 and bool(found.json()["closed"])

        await eventually(closed, within_s=60)

    finished = spans.get_finished_spans()
    roots = [s for s in finished if s.name == "dossier received"]
    assert len(roots) == 1, [s.name for s in finished]
    trace_id = roots[0].context.trace_id
    in_trace = {handled(s) for s in finished if s.context.trace_id == trace_id} - {None}
    prefix = topic_prefix
    expected = {
        (prefix + "dossier.received", prefix + "router"),
        (prefix + "dossier.received", prefix + "tracker"),
        (requests_topic(Agency.CIVIL_STATUS, prefix), prefix + "connector-civil_status"),
        (requests_topic(Agency.CIVIL_STATUS, prefix), prefix + "tracker"),
        (prefix + "handoff.outcome", prefix + "router"),
        (prefix + "handoff.outcome", prefix + "tracker"),
        (prefix + "dossier.status", prefix + "tracker"),
        (prefix + "dossier.closed", prefix + "tracker"),
    }
    assert expected <= in_trace, sorted(map(str, in_trace))
    strays = [s.name for s in finished if handled(s) and s.context.trace_id != trace_id]
    assert not strays, f"records handled outside the dossier's trace: {strays}"

"""W3C trace context across every hop, with FastStream's OpenTelemetry middleware; off by default.

Tracing is on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (the standard OpenTelemetry variable; the
other ``OTEL_*`` variables are honoured by the exporter) and the optional ``tracing`` extra is
installed (``pip install 'lienthong[tracing]'``). Nothing here imports OpenTelemetry until tracing is on.

How one dossier stays one trace:

- every Kafka publish and consume goes through :class:`KafkaTelemetryMiddleware`, which writes the
  ``traceparent`` header on publish and continues it on consume;
- events are published later by the outbox relay, outside the handler's span: the event envelope
  carries its ``traceparent`` (``ce_traceparent`` header; an event inherits its cause's), and
  :func:`traced_sender` publishes each record inside that context, so the hop stays in the trace;
- intake starts the trace of a new dossier (:func:`start_trace`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Awaitable, Iterator
from typing import TYPE_CHECKING, Any, Final

from schemas.envelope import CE_TRACEPARENT
from services.runtime.outbox import OutgoingRecord, SendRecord

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

ENDPOINT_VARIABLE: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"

log = logging.getLogger(__name__)

_provider: TracerProvider | None = None


def tracing_enabled() -> bool:
    return bool(os.environ.get(ENDPOINT_VARIABLE, "").strip()) or _provider is not None


def use_tracer_provider(provider: TracerProvider | None) -> None:
    """Use ``provider`` (tests: one with an in-memory exporter); None turns tracing back to the env."""
    global _provider
    _provider = provider


def tracer_provider(service: str) -> TracerProvider | None:
    """The process's tracer provider: the one given to :func:`use_tracer_provider`, else an OTLP/HTTP
    exporter's when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, else None (tracing off)."""
    global _provider
    if _provider is not None:
        return _provider
    if not os.environ.get(ENDPOINT_VARIABLE, "").strip():
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("%s is set but the tracing extra is not installed: tracing stays off", ENDPOINT_VARIABLE)
        return None
    name = os.environ.get("OTEL_SERVICE_NAME") or f"lienthong-{service}"
    provider = SdkTracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def telemetry_middleware(service: str) -> Any | None:
    """FastStream's Kafka telemetry middleware when tracing is on, else None."""
    provider = tracer_provider(service)
    if provider is None:
        return None
    from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware

    return KafkaTelemetryMiddleware(tracer_provider=provider)


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or None when nothing is traced."""
    if not tracing_enabled():
        return None
    from opentelemetry import trace

    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{int(span_context.trace_flags):02x}"


@contextlib.contextmanager
def start_trace(name: str, service: str) -> Iterator[str | None]:
    """A new root span (a dossier entering the bus); yields its ``traceparent`` (None when off)."""
    provider = tracer_provider(service)
    if provider is None:
        yield None
        return
    tracer = provider.get_tracer("lienthong")
    with tracer.start_as_current_span(name):
        yield current_traceparent()


@contextlib.contextmanager
def continuing(traceparent: str) -> Iterator[None]:
    """Runs the block inside the trace context of ``traceparent`` (tracing on)."""
    from opentelemetry import context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    token = context.attach(TraceContextTextMapPropagator().extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        context.detach(token)


def traced_sender(send: SendRecord) -> SendRecord:
    """Wraps an outbox sender: each record is published inside the trace of the event it carries."""

    async def traced(record: OutgoingRecord) -> Awaitable[object]:
        traceparent = record.headers.get(CE_TRACEPARENT)
        if traceparent is None or not tracing_enabled():  # checked here: spares each record a context
            return await send(record)
        with continuing(traceparent):
            return await send(record)

    return traced

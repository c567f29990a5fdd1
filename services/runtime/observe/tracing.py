"""W3C trace context across every hop, with FastStream's OpenTelemetry middleware; off by default.

Tracing is on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (the standard OpenTelemetry variable; the
other ``OTEL_*`` variables are honoured by the exporter) and the optional ``tracing`` extra is
installed (``pip install 'lienthong[tracing]'``). Nothing here imports OpenTelemetry until tracing is on.

How one dossier stays one trace:

- FastStream's :class:`KafkaTelemetryMiddleware` wraps each poll of a subscriber; our consumers take a
  poll as a batch, for which it starts a span of its own linked to each record's trace. So the runtime
  handles each record inside a span of the record's own trace (:func:`handling`), continued from its
  ``traceparent`` header;
- events are published later by the outbox relay, outside the handler's span, through its own
  producer (no middleware): the event envelope carries its ``traceparent`` (``ce_traceparent``
  header; an event inherits its cause's), and :class:`TracedSender` opens a publish span in that
  context and writes the span's W3C ``traceparent`` header on the record, which the consumer's
  middleware continues;
- intake starts the trace of a new dossier (:func:`start_trace`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Awaitable, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

from schemas.envelope import CE_TRACEPARENT
from services.runtime.storage.outbox import OutgoingRecord, Sender, SendRecord

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

ENDPOINT_VARIABLE: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACEPARENT: Final = "traceparent"  # the W3C header FastStream's telemetry middleware reads

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


class TracedSender:
    """Wraps the outbox relay's sender: with tracing on, each record carrying an envelope trace is
    published inside a producer span of that trace, whose context the record carries on as its
    ``traceparent`` header. With tracing off it adds nothing but one check per record."""

    def __init__(self, send: Sender | SendRecord, service: str = "lienthong") -> None:
        self.send = send
        self.service = service

    async def __call__(self, record: OutgoingRecord) -> Awaitable[object]:
        traceparent = record.headers.get(CE_TRACEPARENT)
        if not isinstance(traceparent, str) or not tracing_enabled():
            return await self.send(record)
        provider = tracer_provider(self.service)
        if provider is None:
            return await self.send(record)
        from opentelemetry.trace import SpanKind

        with continuing(traceparent):
            tracer = provider.get_tracer("lienthong")
            with tracer.start_as_current_span(f"{record.topic} publish", kind=SpanKind.PRODUCER):
                headers = {**record.headers, TRACEPARENT: current_traceparent() or traceparent}
                return await self.send(replace(record, headers=headers))

    async def reset(self) -> None:
        reset = getattr(self.send, "reset", None)
        if reset is not None:
            await reset()


@contextlib.contextmanager
def handling(topic: str, headers: Mapping[str, str], group_id: str, service: str) -> Iterator[None]:
    """Runs the block inside a consumer span for one record, in the trace its ``traceparent`` (or its
    envelope's ``ce_traceparent``) names; a record without one starts a trace of its own."""
    provider = tracer_provider(service)
    if provider is None:
        yield
        return
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = headers.get(TRACEPARENT) or headers.get(CE_TRACEPARENT)
    context = TraceContextTextMapPropagator().extract({TRACEPARENT: parent}) if parent else None
    attributes = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.consumer.group.name": group_id,
        "messaging.operation": "process",
    }
    tracer = provider.get_tracer("lienthong")
    with tracer.start_as_current_span(
        f"{topic} handle", context=context, kind=SpanKind.CONSUMER, attributes=attributes
    ):
        yield


def traced_sender(send: Sender | SendRecord, service: str = "lienthong") -> TracedSender:
    """:class:`TracedSender` around ``send``."""
    return TracedSender(send, service)

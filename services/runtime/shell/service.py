"""The shell every service runs in: an ASGI app with its operations endpoints, the Kafka broker and
background tasks.

A service is a FastAPI app whose lifespan starts its FastStream broker and its background loops (the
outbox relay, pollers, the consumer-lag monitor) and stops them in reverse order, so uvicorn runs any
service the same way. Every service serves:

- ``/health``: liveness (the process answers);
- ``/ready``: 200 once the broker is started, Kafka answers, every consumer has its partitions from
  its group and every background loop is running; 503 otherwise (with the reason);
- ``/metrics``: prometheus-client's default registry — our ``lienthong_*`` catalogue (primed at
  start-up, so every known series exists at zero) and FastStream's message metrics
  (``KafkaPrometheusMiddleware``: counts, sizes and durations per topic);
- ``/asyncapi.json``: the AsyncAPI document generated from the broker (services.runtime.shell.asyncapi).

Every background loop runs supervised (:func:`supervised`): one that dies is logged, counted in
``lienthong_background_loop_restarts_total`` and restarted after a backoff (1 s, doubling up to 30 s,
back to 1 s once it has run for a minute); while it waits, ``/ready`` says which loop is down.

Outside the local stack, a service given its Kafka settings checks at start that the cluster keeps
its topics in more than one copy, and warns naming those it does not
(:mod:`services.runtime.shell.replication`).

The shell adds the Prometheus middleware to the broker (and the OpenTelemetry one when tracing is
on, services.runtime.observe.tracing); ``make_broker`` needs not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from schemas.agencies import Agency
from services.runtime.observe.lag import LagMonitor, consumers_joined
from services.runtime.observe.metrics import METRICS, Service
from services.runtime.observe.tracing import telemetry_middleware
from services.runtime.shell.asyncapi import asyncapi_document
from services.runtime.shell.replication import single_copy_topics
from services.runtime.shell.settings import KafkaSettings

BackgroundLoop = Callable[[], Coroutine[Any, Any, None]]
Hook = Callable[[], Awaitable[None]]

PING_TIMEOUT_S = 2.0
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
HEALTHY_RUN_S = 60.0  # a loop that ran this long before dying starts its backoff afresh

log = logging.getLogger(__name__)


def loop_name(loop: BackgroundLoop) -> str:
    """``OutboxRelay.run``, ``ConnectorHost.poll_loop``: what logs, metrics and readiness call a loop."""
    owner = getattr(loop, "__self__", None)
    name = getattr(loop, "__name__", "loop")
    return f"{type(owner).__name__}.{name}" if owner is not None else name


@dataclass
class LoopHealth:
    """What readiness knows of one supervised loop: ``down`` from its death until its restart."""

    name: str
    down: bool = False
    deaths: int = 0
    last_error: str = ""


async def supervised(
    loop: BackgroundLoop,
    health: LoopHealth,
    *,
    on_death: Callable[[str], None] | None = None,
    first_backoff_s: float = RESTART_FIRST_S,
    max_backoff_s: float = RESTART_MAX_S,
) -> None:
    """Runs ``loop`` for ever: a loop that raises (or returns) is restarted after a backoff."""
    backoff = first_backoff_s
    while True:
        started = time.monotonic()
        health.down = False
        try:
            await loop()
            error = "returned"
            log.error("background loop %s returned; restarting it", health.name)
        except asyncio.CancelledError:
            raise
        except Exception as failure:
            error = f"{type(failure).__name__}: {failure}"[:300]
            log.exception("background loop %s died; restarting it in %.0f s", health.name, backoff)
        health.down = True
        health.deaths += 1
        health.last_error = error
        if on_death is not None:
            on_death(health.name)
        if time.monotonic() - started >= HEALTHY_RUN_S:
            backoff = first_backoff_s
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, max_backoff_s)


def prometheus_middleware(app_name: str, registry: CollectorRegistry = REGISTRY) -> KafkaPrometheusMiddleware:
    """FastStream's message metrics (``faststream_*``), labelled with the service's name."""
    return KafkaPrometheusMiddleware(registry=registry, app_name=app_name)


def instrument_broker(broker: KafkaBroker, name: str) -> None:
    """Adds the Prometheus middleware (once) and, when tracing is on, the OpenTelemetry one
    (outermost, so the message span covers everything else)."""
    present = tuple(getattr(broker.config, "broker_middlewares", ()))
    if not any(isinstance(m, KafkaPrometheusMiddleware) for m in present):
        broker.add_middleware(prometheus_middleware(name))
    telemetry = telemetry_middleware(name)
    if telemetry is not None and not any(type(m) is type(telemetry) for m in present):
        broker.insert_middleware(telemetry)


def build_service_app(
    name: str,
    broker: KafkaBroker,
    *,
    description: str = "",
    kind: Service | None = None,
    agencies: Iterable[Agency] = (),
    procedures: Iterable[str] = (),
    loops: Sequence[BackgroundLoop] = (),
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    lag_interval_s: float = 5.0,
    kafka: KafkaSettings | None = None,
) -> FastAPI:
    """``kind``, ``agencies`` and ``procedures`` say which ``lienthong_*`` series to prime at zero;
    ``kafka``, the cluster whose replication of the service's topics is checked at start."""
    instrument_broker(broker, name)
    lag = LagMonitor(broker, interval_s=lag_interval_s)
    agency_list, procedure_list = list(agencies), list(procedures)
    all_loops = [*loops, lag.run]
    health = [LoopHealth(loop_name(loop)) for loop in all_loops]

    def died(loop: str) -> None:
        if kind is not None:
            METRICS.loop_restarted(kind, loop)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        METRICS.prime(service=kind, agencies=agency_list, procedures=procedure_list)
        if kind is not None:
            METRICS.prime_loops(kind, [h.name for h in health])
        for hook in on_startup:
            await hook()
        await broker.start()
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(supervised(loop, state, on_death=died), name=f"{name}:{state.name}")
            for loop, state in zip(all_loops, health, strict=True)
        ]
        if kafka is not None:  # a warning in the log at most; it never holds the start up
            topics = [c["address"] for c in asyncapi_document(broker, name)["channels"].values()]
            tasks.append(asyncio.create_task(single_copy_topics(kafka, topics), name=f"{name}:replication"))
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            await broker.stop()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for hook in on_shutdown:
                await hook()

    app = FastAPI(title=f"Liên Thông {name}", description=description, lifespan=lifespan)
    app.state.ready = False
    app.state.service = name
    app.state.broker = broker
    app.state.lag = lag
    app.state.loops = health

    @app.get("/health", tags=["operations"])
    async def liveness() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok", "service": name}

    @app.get("/ready", tags=["operations"], response_model=None)
    async def ready() -> JSONResponse:
        """Readiness: 200 once the broker is started, Kafka answers and every consumer has its
        partitions; 503 before (and while stopping)."""
        status, reason = await readiness(app, broker)
        body = {"status": status, "service": name, "reason": reason}
        return JSONResponse(body, status_code=200 if status == "ready" else 503)

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus exposition of the process's metrics."""
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/asyncapi.json", tags=["operations"])
    async def asyncapi() -> dict[str, Any]:
        """The AsyncAPI document of this service's topics, generated from its broker."""
        return asyncapi_document(broker, name, description=description)

    return app


async def readiness(app: FastAPI, broker: KafkaBroker) -> tuple[str, str]:
    """``("ready", "ok")``, or ``("starting", why)`` / ``("not ready", why)``."""
    if not getattr(app.state, "ready", False):
        return "starting", "the broker is not started (starting or stopping)"
    down = [h for h in getattr(app.state, "loops", ()) if h.down]
    if down:
        return "not ready", "; ".join(
            f"background loop {h.name} is down (died {h.deaths} times; last: {h.last_error})" for h in down
        )
    joined, reason = consumers_joined(broker)
    if not joined:
        return "starting", reason
    try:
        answers = await broker.ping(timeout=PING_TIMEOUT_S)
    except Exception as error:
        return "not ready", f"Kafka does not answer: {type(error).__name__}"
    if not answers:
        return "not ready", "Kafka does not answer"
    return "ready", "ok"

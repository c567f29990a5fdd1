"""The shell every service runs in: an ASGI app with /health, the Kafka broker and background tasks.

A service is a FastAPI app whose lifespan starts its FastStream broker and its background loops (the
outbox relay, pollers) and stops them in reverse order, so uvicorn runs any service the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from faststream.kafka import KafkaBroker

BackgroundLoop = Callable[[], Coroutine[Any, Any, None]]
Hook = Callable[[], Awaitable[None]]


def build_service_app(
    name: str,
    broker: KafkaBroker,
    *,
    description: str = "",
    loops: Sequence[BackgroundLoop] = (),
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for hook in on_startup:
            await hook()
        await broker.start()
        tasks = [
            asyncio.create_task(loop(), name=f"{name}:{getattr(loop, '__name__', 'loop')}") for loop in loops
        ]
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

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok", "service": name}

    return app

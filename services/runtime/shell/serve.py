"""Running a service app with uvicorn: what every ``python -m services.<name>`` does."""

from __future__ import annotations

import gc

import uvicorn
from fastapi import FastAPI

from services.runtime.observe.logs import configure_logging


def serve(app: FastAPI, host: str, port: int) -> None:
    # uvicorn's own logging config is not used (log_config=None): its loggers propagate to the one
    # masked handler, JSON lines by default (services.runtime.observe.logs).
    configure_logging(str(getattr(app.state, "service", "lienthong")))
    # What exists by now (modules, pydantic validators, the app) lives as long as the process. Frozen
    # out of the cyclic collector, it is no longer scanned by every full collection, each of which
    # stalled the event loop (docs/performance.md).
    gc.freeze()
    uvicorn.run(app, host=host, port=port, log_level="warning", log_config=None, lifespan="on")

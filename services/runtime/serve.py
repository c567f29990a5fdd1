"""Running a service app with uvicorn: what every ``python -m services.<name>`` does."""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI


def serve(app: FastAPI, host: str, port: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per agency call is too much
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")

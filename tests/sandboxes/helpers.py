"""Helpers for the sandbox tests: in-process clients and deadline-bound waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI

from connectors.sandbox_kit.admin import admin_headers

T = TypeVar("T")
BASE_URL = "http://sandbox.test"
# The admin token the in-process sandboxes of these tests are given (tests/sandboxes/conftest.py and
# tests/connectors/conftest.py put it in LIENTHONG_SANDBOX_ADMIN_TOKEN for every test).
TEST_ADMIN_TOKEN = "sandbox-admin-token-of-the-tests"


def asgi_client(app: FastAPI, *, admin: bool = True) -> httpx.AsyncClient:
    """A client of the app in process; ``admin``: it sends the tests' admin token (fault endpoints)."""
    headers = admin_headers(TEST_ADMIN_TOKEN) if admin else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL, headers=headers)


async def eventually(check: Callable[[], Awaitable[T | None]], *, within_s: float = 5.0) -> T:
    """Re-run ``check`` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + within_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {within_s}s (last: {result!r})")
        await asyncio.sleep(0.02)


async def records(http: httpx.AsyncClient, table: str) -> list[dict[str, Any]]:
    response = await http.get(f"/_sandbox/records/{table}")
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["records"]
    return rows

"""Calling a sandbox app in process, with the timeouts a real network would enforce.

``httpx.ASGITransport`` ignores the client's timeout: a sandbox told to be slow would simply make the
call slow. :class:`DeadlineASGITransport` enforces the request's read timeout the way a socket does,
raising ``httpx.ReadTimeout``, so a connector sees exactly what it would see over the network.
"""

from __future__ import annotations

import asyncio

import httpx


class DeadlineASGITransport(httpx.ASGITransport):
    """``httpx.ASGITransport`` that honours the request's timeout (the longest of its parts)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout") or {}
        limits = [value for value in timeouts.values() if value is not None]
        if not limits:
            return await super().handle_async_request(request)
        limit = max(limits)
        try:
            async with asyncio.timeout(limit):
                return await super().handle_async_request(request)
        except TimeoutError:
            raise httpx.ReadTimeout(f"no answer within {limit:g} s", request=request) from None

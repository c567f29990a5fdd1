"""``Idempotency-Key`` support for the sandboxes' write endpoints.

The first request with a key claims it by inserting a ``pending`` row (the primary key makes
concurrent duplicates lose the race), runs, and stores its response (status, body, media
type). A repeat with the same key and the same body gets the stored response back, marked
``Idempotent-Replayed: true``, and no second side effect. A repeat with a different body is
answered 422. A repeat that arrives while the first is still running waits for it.

Keys are scoped by method and path: the same key on two endpoints means two requests.
Responses with a 5xx status, and 400 (a request the sandbox could not read, so no effect), are
not stored: the key is released and a retry runs again.
Bodies are compared by a hash of the canonical JSON (key order does not matter) or of the raw
bytes for other media types. The header and the codes answered are the ones the agency clients
read (:mod:`connectors.idempotency_key`).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from connectors.idempotency_key import HEADER, KEY_IN_PROGRESS, KEY_INVALID, KEY_REUSED, REPLAYED_HEADER
from connectors.sandbox_kit.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done')),
    status_code INTEGER,
    body BLOB,
    media_type TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
"""

ErrorResponse = Callable[[int, str, str], Response]
Handler = Callable[[], Awaitable[Response] | Response]


def json_error(status_code: int, code: str, message: str) -> Response:
    """The default error body; sandboxes with their own style pass another factory."""
    return JSONResponse({"error": code, "message": message}, status_code=status_code)


def request_fingerprint(body: bytes) -> str:
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = body
    return hashlib.sha256(canonical).hexdigest()


class IdempotencyKeys:
    """The key store of one sandbox; call ``run`` from each write endpoint."""

    def __init__(
        self,
        store: Store,
        *,
        error_response: ErrorResponse = json_error,
        wait_for_pending_s: float = 10.0,
    ) -> None:
        self.store = store
        self.error_response = error_response
        self.wait_for_pending_s = wait_for_pending_s
        store.apply_schema(SCHEMA)
        # A pending row left by a previous process belongs to a request that never finished.
        store.execute("DELETE FROM idempotency_keys WHERE state = 'pending'")

    async def run(self, request: Request, handler: Handler) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return await _call(handler)
        if not 1 <= len(key) <= 255 or not key.isprintable():
            return self.error_response(400, KEY_INVALID, f"{HEADER} must be 1 to 255 printable characters")
        scope = f"{request.method} {request.url.path}"
        fingerprint = request_fingerprint(await request.body())
        deadline = time.monotonic() + self.wait_for_pending_s
        while True:
            existing = self._claim(scope, key, fingerprint)
            if existing is None:
                break
            if existing["request_hash"] != fingerprint:
                return self.error_response(
                    422,
                    KEY_REUSED,
                    f"{HEADER} '{key}' was already used with a different request body; "
                    "use a new key for a new request",
                )
            if existing["state"] == "done":
                return Response(
                    content=existing["body"],
                    status_code=int(existing["status_code"]),
                    media_type=existing["media_type"],
                    headers={REPLAYED_HEADER: "true"},
                )
            if time.monotonic() >= deadline:
                return self.error_response(
                    409, KEY_IN_PROGRESS, f"a request with {HEADER} '{key}' is still being processed"
                )
            await asyncio.sleep(0.01)
        return await self._execute(scope, key, handler)

    def _claim(self, scope: str, key: str, fingerprint: str) -> dict[str, Any] | None:
        """Insert a pending row and return None, or return the row that is already there."""
        with self.store.transaction() as conn:
            row = conn.execute(
                "SELECT request_hash, state, status_code, body, media_type FROM idempotency_keys "
                "WHERE scope = ? AND key = ?",
                (scope, key),
            ).fetchone()
            if row is not None:
                return {name: row[name] for name in row.keys()}  # noqa: SIM118
            conn.execute(
                "INSERT INTO idempotency_keys (scope, key, request_hash, state, created_at) "
                "VALUES (?, ?, ?, 'pending', ?)",
                (scope, key, fingerprint, datetime.now(UTC).isoformat()),
            )
        return None

    async def _execute(self, scope: str, key: str, handler: Handler) -> Response:
        try:
            response = await _call(handler)
        except BaseException:
            self._release(scope, key)
            raise
        if response.status_code >= 500 or response.status_code == 400:
            # Not stored: a failure may pass on retry, and an unreadable request had no effect.
            self._release(scope, key)
            return response
        media_type = response.headers.get("content-type") or response.media_type
        self.store.execute(
            "UPDATE idempotency_keys SET state = 'done', status_code = ?, body = ?, media_type = ? "
            "WHERE scope = ? AND key = ?",
            (response.status_code, bytes(response.body), media_type, scope, key),
        )
        return response

    def _release(self, scope: str, key: str) -> None:
        self.store.execute("DELETE FROM idempotency_keys WHERE scope = ? AND key = ?", (scope, key))


async def _call(handler: Handler) -> Response:
    result = handler()
    if inspect.isawaitable(result):
        return await result
    return result

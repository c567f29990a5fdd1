"""Fault injection for the sandboxes: slow, failing, down, or talking garbage.

``FaultMiddleware`` is plain ASGI middleware driven by a ``FaultInjector`` that holds the
current ``FaultSettings``. Per call (``/health`` and ``/_sandbox/*`` are never faulted):

1. wait ``latency_ms``;
2. while ``fail_next`` is above zero, answer ``error_status`` and count it down (a blip of
   exactly N failed calls, e.g. to prove an in-process retry recovers);
3. while ``down_until`` is in the future, answer 503 "down for maintenance" — or, with
   ``down_mode="drop"``, start the answer and cut the connection (the client sees a
   dropped connection, not a status);
4. with probability ``failure_rate`` answer ``error_status`` (503 by default; 500/429 too);
5. with probability ``malformed_rate`` answer 200 with a garbage body (the request is
   *not* executed: no side effect happens);
6. otherwise run the request; with ``reply_patch`` set, a successful JSON object answer has those
   fields replaced (the request *is* executed: an answer that parses but breaks our contract, such
   as a registration number longer than any register issues or a blank reason).

Draws come from one ``random.Random(seed)``, so a seeded run is deterministic.
Settings are given at start (CLI flags or ``SANDBOX_FAULT_*`` environment variables) and
changed at run time through ``PUT/GET/DELETE /_sandbox/faults`` (see ``admin.py``).
"""

from __future__ import annotations

import asyncio
import enum
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ErrorStatus = Literal[429, 500, 502, 503, 504]
DownMode = Literal["unavailable", "drop"]

EXEMPT_PATHS = ("/health",)
EXEMPT_PREFIX = "/_sandbox/"


class FaultSettings(BaseModel):
    """The faults a sandbox injects right now."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: int = Field(default=0, ge=0, le=600_000, description="delay added to every call")
    failure_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="share of calls answered error_status"
    )
    error_status: ErrorStatus = 503
    fail_next: int = Field(
        default=0, ge=0, le=1_000_000, description="the next N calls answer error_status (counts down)"
    )
    down_until: datetime | None = Field(default=None, description="UTC time until which the sandbox is down")
    down_mode: DownMode = "unavailable"
    malformed_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="share of calls answered garbage")
    reply_patch: dict[str, JsonValue] | None = Field(
        default=None, description="fields replaced in every successful JSON object answer"
    )
    seed: int | None = Field(default=None, description="seed for the fault draws (deterministic runs)")

    def is_down(self, now: datetime | None = None) -> bool:
        return self.down_until is not None and (now or datetime.now(UTC)) < self.down_until


class FaultUpdate(BaseModel):
    """Body of ``PUT /_sandbox/faults``: fields left out keep their current value."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: int | None = Field(default=None, ge=0, le=600_000)
    failure_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    error_status: ErrorStatus | None = None
    fail_next: int | None = Field(default=None, ge=0, le=1_000_000)
    down_for_s: float | None = Field(default=None, ge=0.0, description="down from now for this long; 0 = up")
    down_mode: DownMode | None = None
    malformed_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    reply_patch: dict[str, JsonValue] | None = None
    seed: int | None = None


class FaultEnvironment(BaseSettings):
    """Start-up faults from ``SANDBOX_FAULT_*`` environment variables (CLI flags override)."""

    model_config = SettingsConfigDict(env_prefix="SANDBOX_FAULT_", extra="ignore")

    latency_ms: int = 0
    failure_rate: float = 0.0
    error_status: ErrorStatus = 503
    fail_next: int = 0
    down_for_s: float = 0.0
    down_mode: DownMode = "unavailable"
    malformed_rate: float = 0.0
    seed: int | None = None

    def to_update(self) -> FaultUpdate:
        return FaultUpdate(**self.model_dump())


class Decision(enum.Enum):
    PASS = "pass"
    DOWN = "down"
    FAIL = "fail"
    MALFORMED = "malformed"


GARBAGE_BODIES: dict[str, bytes] = {
    "application/json": b'{"job_id": "J\x00\xff", "status": succeeded, <<< garbage',
    "application/xml": b"<?xml version='1.0'?><ThongBaoNopTien><SoThongBao>TB-\x00<<< garbage",
}


class FaultInjector:
    """Holds the current settings and draws the fault decision for each call."""

    def __init__(
        self, settings: FaultSettings | None = None, *, malformed_media_type: str = "application/json"
    ):
        self._settings = settings or FaultSettings()
        self._random = random.Random(self._settings.seed)
        self.malformed_media_type = malformed_media_type

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def update(self, change: FaultUpdate) -> FaultSettings:
        values = self._settings.model_dump()
        for name, value in change.model_dump(exclude_unset=True).items():
            if name == "down_for_s":
                values["down_until"] = (
                    datetime.now(UTC) + timedelta(seconds=value) if value is not None and value > 0 else None
                )
            elif value is not None or name == "seed":
                values[name] = value
        self._settings = FaultSettings(**values)
        if "seed" in change.model_fields_set:
            self._random.seed(self._settings.seed)
        return self._settings

    def reset(self) -> FaultSettings:
        self._settings = FaultSettings()
        self._random.seed(None)
        return self._settings

    def decide(self) -> Decision:
        settings = self._settings
        if settings.fail_next > 0:
            self._settings = settings.model_copy(update={"fail_next": settings.fail_next - 1})
            return Decision.FAIL
        if settings.is_down():
            return Decision.DOWN
        if settings.failure_rate and self._random.random() < settings.failure_rate:
            return Decision.FAIL
        if settings.malformed_rate and self._random.random() < settings.malformed_rate:
            return Decision.MALFORMED
        return Decision.PASS


class ConnectionDropped(Exception):
    """Raised after the response has started so that the server cuts the connection."""


def is_exempt(path: str) -> bool:
    return path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIX)


async def _send_simple(
    send: Send, status: int, body: bytes, media_type: str, extra: list[tuple[bytes, bytes]]
) -> None:
    headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _patching(send: Send, patch: dict[str, JsonValue]) -> Send:
    """A ``send`` that holds a successful JSON answer back and sends it with ``patch``'s fields."""
    held: dict[str, Any] = {}
    body = bytearray()

    async def patched(message: Message) -> None:
        if message["type"] == "http.response.start":
            held.update(message)
            return
        if message["type"] != "http.response.body" or not held:
            await send(message)
            return
        body.extend(message.get("body", b""))
        if message.get("more_body"):
            return
        content = bytes(body)
        headers = [(k, v) for k, v in held.get("headers", []) if k.lower() != b"content-length"]
        is_json = any(k.lower() == b"content-type" and b"json" in v for k, v in headers)
        if 200 <= held["status"] < 300 and is_json:
            document = json.loads(content)
            if isinstance(document, dict):
                content = json.dumps({**document, **patch}, ensure_ascii=False).encode()
        headers.append((b"content-length", str(len(content)).encode()))
        await send({**held, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    return patched


class FaultMiddleware:
    """ASGI middleware that applies the injector's decision before the app runs."""

    def __init__(self, app: ASGIApp, injector: FaultInjector) -> None:
        self.app = app
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        settings = self.injector.settings
        if settings.latency_ms:
            await asyncio.sleep(settings.latency_ms / 1000)
        decision = self.injector.decide()
        if decision is Decision.PASS and settings.reply_patch:
            await self.app(scope, receive, _patching(send, settings.reply_patch))
        elif decision is Decision.PASS:
            await self.app(scope, receive, send)
        elif decision is Decision.DOWN:
            await self._down(send, settings)
        elif decision is Decision.FAIL:
            body = json.dumps({"error": "injected_failure", "message": "Sandbox fault: injected failure"})
            extra = [(b"retry-after", b"1")] if settings.error_status in (429, 503) else []
            await _send_simple(send, settings.error_status, body.encode(), "application/json", extra)
        else:
            media_type = self.injector.malformed_media_type
            garbage = GARBAGE_BODIES.get(media_type, b"\x00\xff garbage")
            await _send_simple(send, 200, garbage, media_type, [])

    async def _down(self, send: Send, settings: FaultSettings) -> None:
        until = settings.down_until or datetime.now(UTC)
        if settings.down_mode == "drop":
            # Announce a body that never comes, then fail: the server closes the connection.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")],
                }
            )
            raise ConnectionDropped("sandbox fault: connection dropped while down")
        remaining = max(1, int((until - datetime.now(UTC)).total_seconds() + 0.999))
        body = json.dumps(
            {
                "error": "down_for_maintenance",
                "message": "Hệ thống đang bảo trì / down for maintenance",
                "until": until.isoformat(),
            },
            ensure_ascii=False,
        )
        await _send_simple(
            send, 503, body.encode(), "application/json", [(b"retry-after", str(remaining).encode())]
        )

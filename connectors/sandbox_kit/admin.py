"""The endpoints every sandbox shares: ``/health``, ``/_sandbox/records``, ``/_sandbox/faults``.

``install_sandbox_kit`` wires them and the fault middleware into a sandbox's FastAPI app.

The fault endpoints change how an agency's system behaves for everyone who calls it, so they are an
administrator's: they answer only a request with ``Authorization: Bearer <admin token>``, the token
the sandbox was given in ``LIENTHONG_SANDBOX_ADMIN_TOKEN`` (the local stack draws one per run and
keeps it in an owner-only file). A sandbox given no token serves no fault endpoints at all (404);
faults set at start (flags, ``SANDBOX_FAULT_*``) still apply. Sandboxes are for local runs and tests
only: no production deployment includes them (see ``services/tools/deploy``).
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request

from connectors.sandbox_kit.faults import FaultInjector, FaultMiddleware, FaultSettings, FaultUpdate
from connectors.sandbox_kit.store import Store

ADMIN_TOKEN_ENV = "LIENTHONG_SANDBOX_ADMIN_TOKEN"
FAULTS_PATH = "/_sandbox/faults"
REFUSED = (
    f"The fault endpoints need Authorization: Bearer <admin token>, the token this sandbox was given in "
    f"{ADMIN_TOKEN_ENV}."
)


def admin_token_from_env() -> str | None:
    """The admin token in ``LIENTHONG_SANDBOX_ADMIN_TOKEN``; None when unset or blank."""
    return os.environ.get(ADMIN_TOKEN_ENV, "").strip() or None


def admin_headers(token: str) -> dict[str, str]:
    """The headers a caller of the fault endpoints sends."""
    return {"Authorization": f"Bearer {token}"}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _admin_check(token: str) -> Any:
    expected = token.encode()

    async def require_admin(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise HTTPException(401, REFUSED, headers={"WWW-Authenticate": 'Bearer realm="sandbox-admin"'})

    return require_admin


def sandbox_router(name: str, store: Store, injector: FaultInjector, admin_token: str | None) -> APIRouter:
    router = APIRouter()

    @router.get("/health", tags=["sandbox"])
    async def health() -> dict[str, str]:
        return {"status": "ok", "sandbox": name}

    @router.get("/_sandbox/records", tags=["sandbox"])
    async def record_counts() -> dict[str, dict[str, int]]:
        return {"counts": store.counts()}

    @router.get("/_sandbox/records/{table}", tags=["sandbox"])
    async def records(table: str) -> dict[str, Any]:
        try:
            rows = store.records(table)
        except KeyError:
            raise HTTPException(404, f"no table {table!r}; tables: {', '.join(store.tables())}") from None
        return {
            "table": table,
            "count": len(rows),
            "records": [{k: _jsonable(v) for k, v in row.items()} for row in rows],
        }

    if admin_token is None:
        return router
    admin = [Depends(_admin_check(admin_token))]

    @router.get(FAULTS_PATH, tags=["sandbox"], dependencies=admin)
    async def get_faults() -> FaultSettings:
        return injector.settings

    @router.put(FAULTS_PATH, tags=["sandbox"], dependencies=admin)
    async def put_faults(change: FaultUpdate) -> FaultSettings:
        return injector.update(change)

    @router.delete(FAULTS_PATH, tags=["sandbox"], dependencies=admin)
    async def reset_faults() -> FaultSettings:
        return injector.reset()

    return router


def install_sandbox_kit(
    app: FastAPI,
    *,
    name: str,
    store: Store,
    injector: FaultInjector,
    admin_token: str | None = None,
) -> None:
    """Add the shared endpoints and the fault middleware; keep them reachable on ``app.state``.

    ``admin_token``: the token the fault endpoints require; None takes ``LIENTHONG_SANDBOX_ADMIN_TOKEN``,
    and without either the app serves no fault endpoints (``app.state.fault_endpoints`` says which)."""
    token = admin_token or admin_token_from_env()
    app.include_router(sandbox_router(name, store, injector, token))
    app.add_middleware(FaultMiddleware, injector=injector)
    app.state.store = store
    app.state.faults = injector
    app.state.fault_endpoints = token is not None

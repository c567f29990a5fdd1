"""The endpoints every sandbox shares: ``/health``, ``/_sandbox/records``, ``/_sandbox/faults``.

``install_sandbox_kit`` wires them and the fault middleware into a sandbox's FastAPI app.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException

from connectors.sandbox_kit.faults import FaultInjector, FaultMiddleware, FaultSettings, FaultUpdate
from connectors.sandbox_kit.store import Store


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def sandbox_router(name: str, store: Store, injector: FaultInjector) -> APIRouter:
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

    @router.get("/_sandbox/faults", tags=["sandbox"])
    async def get_faults() -> FaultSettings:
        return injector.settings

    @router.put("/_sandbox/faults", tags=["sandbox"])
    async def put_faults(change: FaultUpdate) -> FaultSettings:
        return injector.update(change)

    @router.delete("/_sandbox/faults", tags=["sandbox"])
    async def reset_faults() -> FaultSettings:
        return injector.reset()

    return router


def install_sandbox_kit(app: FastAPI, *, name: str, store: Store, injector: FaultInjector) -> None:
    """Add the shared endpoints and the fault middleware; keep them reachable on ``app.state``."""
    app.include_router(sandbox_router(name, store, injector))
    app.add_middleware(FaultMiddleware, injector=injector)
    app.state.store = store
    app.state.faults = injector

"""The router's durable state: each dossier's legs and clock, next to the processed events and outbox."""

from __future__ import annotations

from pydantic import ValidationError

from services.router.state import DossierState
from services.runtime.failures.table import describe
from services.runtime.storage.database import Connection
from services.runtime.storage.store import SqlProcessingStore, Write

_SCHEMA = "CREATE TABLE IF NOT EXISTS dossiers (dossier_id TEXT PRIMARY KEY, state TEXT NOT NULL);"


class CorruptState(Exception):
    """A dossier's stored state no longer validates (a release changed its shape, or it was edited):
    the record that needs it is dead-lettered with this reason instead of failing for ever."""


class RouterStore(SqlProcessingStore):
    SCHEMA = _SCHEMA

    def load(self, dossier_id: str) -> DossierState | None:
        row = self.conn.execute("SELECT state FROM dossiers WHERE dossier_id = ?", (dossier_id,)).fetchone()
        if row is None:
            return None
        try:
            return DossierState.model_validate_json(row["state"])
        except ValidationError as error:
            raise CorruptState(
                f"the stored state of dossier {dossier_id} is invalid: {describe(error)}"
            ) from None

    def saving(self, state: DossierState) -> Write:
        def save(conn: Connection) -> None:
            conn.execute(
                "INSERT INTO dossiers (dossier_id, state) VALUES (?, ?) "
                "ON CONFLICT (dossier_id) DO UPDATE SET state = excluded.state",
                (state.dossier_id, state.model_dump_json()),
            )

        return save

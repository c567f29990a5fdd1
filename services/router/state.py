"""What the router remembers of a dossier between events: its legs and its clock."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from schemas.agencies import Agency
from schemas.status import NationalStatus


class LegStatus(StrEnum):
    REQUESTED = "requested"
    WAITING_ON_CITIZEN = "waiting_on_citizen"
    COMPLETED = "completed"
    REJECTED = "rejected"
    DEAD_LETTERED = "dead_lettered"

    @property
    def is_settled(self) -> bool:
        """The leg will not move on by itself (a dead letter may still be replayed by an operator)."""
        return self in (LegStatus.COMPLETED, LegStatus.REJECTED, LegStatus.DEAD_LETTERED)


class Leg(BaseModel):
    step_id: str
    agency: Agency
    action: str
    handoff_id: str
    status: LegStatus = LegStatus.REQUESTED
    requested_at: datetime
    due_at: datetime
    result: dict[str, Any] = Field(default_factory=dict)
    reason: str | None = None


class Pause(BaseModel):
    start: datetime
    end: datetime | None = None


class DossierState(BaseModel):
    dossier_id: str
    dossier_code: str
    procedure_code: str
    correlation_id: str
    form_kind: str
    form: dict[str, Any]
    received_at: datetime
    due_at: datetime
    status: NationalStatus = NationalStatus.ACCEPTED
    legs: dict[str, Leg] = Field(default_factory=dict)
    pauses: list[Pause] = Field(default_factory=list)
    closed: bool = False

    def done_steps(self) -> set[str]:
        return {leg.step_id for leg in self.legs.values() if leg.status is LegStatus.COMPLETED}

    def started_steps(self) -> set[str]:
        return set(self.legs)

    def holders(self) -> list[Agency]:
        """Agencies that hold the dossier now (legs requested and not yet answered)."""
        return sorted({leg.agency for leg in self.legs.values() if leg.status is LegStatus.REQUESTED})

    def open_pause(self) -> Pause | None:
        return next((p for p in self.pauses if p.end is None), None)

    def inputs(self) -> dict[str, dict[str, Any]]:
        """Results of completed legs, handed to later steps."""
        return {leg.step_id: leg.result for leg in self.legs.values() if leg.status is LegStatus.COMPLETED}

"""The residence connector: the police residence registration system (đăng ký cư trú).

Actions and the ``result`` each hands to later legs (never a name or a citizen id):

- ``register_permanent_residence`` (birth form; needs the civil-status leg's result among ``inputs``:
  the one holding ``child_personal_id`` and ``registration_no``) → ``{residence_record_no,
  registered_on}``: the child is registered at the form's ``residence_address``;
- ``remove_permanent_residence`` (death form; needs the death registration: the input holding
  ``registration_no``) → ``{residence_record_no, removed_on}``.

Reference: the residence record number. The police answer synchronously; a refusal (already
registered, already removed) is ``AgencyRejected`` with the police's Vietnamese reason.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from connectors import (
    AgencyProtocolError,
    AgencySettings,
    Completed,
    HandoffRequest,
    HandoffResult,
    HttpConnector,
    earlier_result,
    parse_form,
)
from connectors.residence.client import AGENCY, ResidenceClient
from schemas.agencies import Agency
from schemas.forms import BirthForm, DeathForm


class ResidenceSettings(AgencySettings):
    """From ``LIENTHONG_RESIDENCE_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="LIENTHONG_RESIDENCE_", extra="ignore")

    url: str = "http://127.0.0.1:8203"


class ResidenceConnector(HttpConnector[ResidenceSettings, ResidenceClient]):
    agency: ClassVar[Agency] = Agency.RESIDENCE
    actions: ClassVar[frozenset[str]] = frozenset(
        {"register_permanent_residence", "remove_permanent_residence"}
    )

    settings_class = ResidenceSettings
    client_class = ResidenceClient

    async def handle(self, request: HandoffRequest) -> HandoffResult:
        if request.action == "register_permanent_residence":
            birth = parse_form(request, BirthForm, agency=AGENCY)
            registered = earlier_result(request, "child_personal_id", "registration_no", agency=AGENCY)
            filing = await self.client.register_permanent_residence(
                citizen_id=str(registered["child_personal_id"]),
                full_name=birth.child_full_name,
                born=birth.child_date_of_birth,
                address=birth.residence_address,
                birth_registration_no=str(registered["registration_no"]),
                idempotency_key=request.handoff_id,
            )
            return Completed(
                result={"residence_record_no": filing.record_no, "registered_on": filing.on.isoformat()},
                reference=filing.record_no,
            )
        if request.action == "remove_permanent_residence":
            death = parse_form(request, DeathForm, agency=AGENCY)
            registered = earlier_result(request, "registration_no", agency=AGENCY)
            filing = await self.client.remove_permanent_residence(
                citizen_id=death.deceased.citizen_id,
                full_name=death.deceased.full_name,
                address=death.deceased.address or "",
                death_registration_no=str(registered["registration_no"]),
                idempotency_key=request.handoff_id,
            )
            return Completed(
                result={"residence_record_no": filing.record_no, "removed_on": filing.on.isoformat()},
                reference=filing.record_no,
            )
        raise AgencyProtocolError(f"the residence connector does not serve {request.action!r}", agency=AGENCY)

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

from typing import Any, ClassVar, TypeVar

import httpx
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import to_json
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.base import Completed, Connector, HandoffRequest, HandoffResult
from connectors.errors import AgencyProtocolError
from connectors.residence.client import AGENCY, ResidenceClient
from schemas.agencies import Agency
from schemas.forms import BirthForm, DeathForm

F = TypeVar("F", bound=BaseModel)


class ResidenceSettings(BaseSettings):
    """From ``LIENTHONG_RESIDENCE_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="LIENTHONG_RESIDENCE_", extra="ignore")

    url: str = "http://127.0.0.1:8203"
    timeout_s: float = Field(default=10.0, gt=0, description="one HTTP call to the police system")


def parse_form(request: HandoffRequest, model: type[F]) -> F:
    """The request's form as ``model``; a form that does not fit breaks the handoff contract."""
    try:
        return model.model_validate_json(to_json(request.form))
    except ValidationError as exc:
        raise AgencyProtocolError(
            f"{request.action}: the {request.form_kind!r} form is not a valid {model.__name__}: "
            f"{exc.errors(include_input=False, include_url=False)}",
            agency=AGENCY,
        ) from exc


def earlier_result(request: HandoffRequest, *keys: str) -> dict[str, Any]:
    """The one earlier leg's result holding every key in ``keys`` (found by content, never by step id)."""
    found = [result for result in request.inputs.values() if all(result.get(key) for key in keys)]
    if len(found) != 1:
        raise AgencyProtocolError(
            f"{request.action} needs exactly one earlier result with {', '.join(keys)}, found {len(found)}",
            agency=AGENCY,
        )
    return found[0]


class ResidenceConnector(Connector):
    agency: ClassVar[Agency] = Agency.RESIDENCE
    actions: ClassVar[frozenset[str]] = frozenset(
        {"register_permanent_residence", "remove_permanent_residence"}
    )

    def __init__(
        self, settings: ResidenceSettings | None = None, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings = settings or ResidenceSettings()
        self._transport = transport
        self._client: ResidenceClient | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = ResidenceClient(
                self.settings.url, timeout=self.settings.timeout_s, transport=self._transport
            )

    async def stop(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    @property
    def client(self) -> ResidenceClient:
        if self._client is None:
            raise RuntimeError("ResidenceConnector.start() was not called")
        return self._client

    async def handle(self, request: HandoffRequest) -> HandoffResult:
        if request.action == "register_permanent_residence":
            birth = parse_form(request, BirthForm)
            registered = earlier_result(request, "child_personal_id", "registration_no")
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
            death = parse_form(request, DeathForm)
            registered = earlier_result(request, "registration_no")
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

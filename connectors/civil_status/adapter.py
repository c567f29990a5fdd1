"""The civil-status registry connector: marriages, births and deaths, answered synchronously.

Actions and their results (reference: the registration number):

- ``register_marriage`` (marriage form) → ``{registration_no, registered_on, book_no}``;
- ``register_birth`` (birth form) → the same plus ``child_personal_id``: the child's new personal id
  (personal data, but the residence and health-insurance legs need it);
- ``register_death`` (death form) → ``{registration_no, registered_on, book_no}``.

A registry refusal (under marriageable age, already married, a death registered twice, …) raises
``AgencyRejected`` with the registry's own Vietnamese reason.
"""

from __future__ import annotations

from typing import ClassVar, Final, TypeVar

import httpx
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import to_json
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.base import Completed, Connector, HandoffRequest, HandoffResult
from connectors.civil_status.client import (
    AGENCY,
    BirthDeclaration,
    CivilStatusClient,
    DeathDeclaration,
    Declarant,
    Parent,
    Person,
    Registration,
)
from connectors.errors import AgencyProtocolError
from schemas.agencies import Agency
from schemas.forms import BirthForm, DeathForm, MarriageForm
from schemas.values import Person as FormPerson

F = TypeVar("F", bound=BaseModel)

# The death form does not ask how the declarant is related to the deceased; the registry requires it.
UNDECLARED_RELATIONSHIP: Final = "Không kê khai"


class CivilStatusSettings(BaseSettings):
    """From ``LIENTHONG_CIVIL_STATUS_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="LIENTHONG_CIVIL_STATUS_", extra="ignore")

    url: str = "http://127.0.0.1:8202"
    timeout_s: float = Field(default=10.0, gt=0, description="one HTTP call to the registry")


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


def person(who: FormPerson) -> Person:
    return Person(full_name=who.full_name, birth_date=who.date_of_birth, citizen_id=who.citizen_id)


def parent(who: FormPerson | None) -> Parent | None:
    return None if who is None else Parent(full_name=who.full_name, citizen_id=who.citizen_id)


def registered(registration: Registration, **extra: str) -> Completed:
    return Completed(
        result={
            "registration_no": registration.registration_no,
            "registered_on": registration.registered_on.isoformat(),
            "book_no": registration.book_no,
            **extra,
        },
        reference=registration.registration_no,
    )


class CivilStatusConnector(Connector):
    agency: ClassVar[Agency] = Agency.CIVIL_STATUS
    actions: ClassVar[frozenset[str]] = frozenset({"register_marriage", "register_birth", "register_death"})

    def __init__(
        self,
        settings: CivilStatusSettings | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings or CivilStatusSettings()
        self._transport = transport
        self._client: CivilStatusClient | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = CivilStatusClient(
                self.settings.url, timeout=self.settings.timeout_s, transport=self._transport
            )

    async def stop(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    @property
    def client(self) -> CivilStatusClient:
        if self._client is None:
            raise RuntimeError("CivilStatusConnector.start() was not called")
        return self._client

    async def handle(self, request: HandoffRequest) -> HandoffResult:
        key = request.handoff_id
        if request.action == "register_marriage":
            marriage = parse_form(request, MarriageForm)
            return registered(
                await self.client.register_marriage(
                    person(marriage.husband), person(marriage.wife), idempotency_key=key
                )
            )
        if request.action == "register_birth":
            birth = parse_form(request, BirthForm)
            declaration = BirthDeclaration(
                child_name=birth.child_full_name,
                birth_date=birth.child_date_of_birth,
                sex=birth.child_sex.value,
                birth_place=birth.place_of_birth,
                mother=Parent(full_name=birth.mother.full_name, citizen_id=birth.mother.citizen_id),
                father=parent(birth.father),
            )
            registration = await self.client.register_birth(declaration, idempotency_key=key)
            return registered(registration, child_personal_id=registration.personal_id)
        if request.action == "register_death":
            death = parse_form(request, DeathForm)
            declaration_of_death = DeathDeclaration(
                deceased=person(death.deceased),
                death_date=death.date_of_death,
                death_place=death.place_of_death,
                declarant=Declarant(
                    full_name=death.declarant.full_name,
                    citizen_id=death.declarant.citizen_id,
                    relationship=UNDECLARED_RELATIONSHIP,
                ),
            )
            return registered(await self.client.register_death(declaration_of_death, idempotency_key=key))
        raise AgencyProtocolError(
            f"the civil-status connector does not serve {request.action!r}", agency=AGENCY
        )

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

from typing import ClassVar, Final

from pydantic_settings import SettingsConfigDict

from connectors import (
    AgencyProtocolError,
    AgencySettings,
    Completed,
    HandoffRequest,
    HandoffResult,
    HttpConnector,
    parse_form,
)
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
from schemas.agencies import Agency
from schemas.forms import BirthForm, DeathForm, MarriageForm
from schemas.values import Person as FormPerson

# The death form does not ask how the declarant is related to the deceased; the registry requires it.
UNDECLARED_RELATIONSHIP: Final = "Không kê khai"


class CivilStatusSettings(AgencySettings):
    """From ``LIENTHONG_CIVIL_STATUS_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="LIENTHONG_CIVIL_STATUS_", extra="ignore")

    url: str = "http://127.0.0.1:8202"


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


class CivilStatusConnector(HttpConnector[CivilStatusSettings, CivilStatusClient]):
    agency: ClassVar[Agency] = Agency.CIVIL_STATUS
    actions: ClassVar[frozenset[str]] = frozenset({"register_marriage", "register_birth", "register_death"})

    settings_class = CivilStatusSettings
    client_class = CivilStatusClient

    async def handle(self, request: HandoffRequest) -> HandoffResult:
        key = request.handoff_id
        if request.action == "register_marriage":
            marriage = parse_form(request, MarriageForm, agency=AGENCY)
            return registered(
                await self.client.register_marriage(
                    person(marriage.husband), person(marriage.wife), idempotency_key=key
                )
            )
        if request.action == "register_birth":
            birth = parse_form(request, BirthForm, agency=AGENCY)
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
            death = parse_form(request, DeathForm, agency=AGENCY)
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

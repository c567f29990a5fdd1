"""The social insurance connector (Bảo hiểm xã hội): every request is an asynchronous job.

``handle`` submits the request (the handoff id is the idempotency key) and answers ``Pending`` at
once, with the agency's request id as poll token and reference; :meth:`poll` answers the same
``Pending`` while the agency is processing, then ``Completed`` or ``Rejected`` (returned, not raised).

- ``issue_child_health_card`` (birth form; needs the civil-status leg's result among ``inputs``: the
  one holding ``child_personal_id`` and ``registration_no``) → ``{health_card_no, valid_from, valid_to}``;
- ``pay_funeral_allowance`` (death form; needs the death registration: the input holding
  ``registration_no``; the beneficiary is the form's, else the declarant) → ``{decision_no, amount_vnd}``.
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
    Pending,
    Rejected,
    earlier_result,
    parse_form,
)
from connectors.social_insurance.client import AGENCY, Insured, SocialInsuranceClient
from schemas.agencies import Agency
from schemas.forms import BirthForm, DeathForm


class SocialInsuranceSettings(AgencySettings):
    """From ``LIENTHONG_SOCIAL_INSURANCE_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="LIENTHONG_SOCIAL_INSURANCE_", extra="ignore")

    url: str = "http://127.0.0.1:8204"


class SocialInsuranceConnector(HttpConnector[SocialInsuranceSettings, SocialInsuranceClient]):
    agency: ClassVar[Agency] = Agency.SOCIAL_INSURANCE
    actions: ClassVar[frozenset[str]] = frozenset({"issue_child_health_card", "pay_funeral_allowance"})

    settings_class = SocialInsuranceSettings
    client_class = SocialInsuranceClient

    async def handle(self, request: HandoffRequest) -> HandoffResult:
        key = request.handoff_id
        if request.action == "issue_child_health_card":
            birth = parse_form(request, BirthForm, agency=AGENCY)
            registered = earlier_result(request, "child_personal_id", "registration_no", agency=AGENCY)
            child = Insured(
                personal_id=str(registered["child_personal_id"]),
                full_name=birth.child_full_name,
                date_of_birth=birth.child_date_of_birth,
                sex=birth.child_sex.value,
            )
            accepted = await self.client.submit_health_card(
                dossier_code=request.dossier_code,
                child=child,
                address=birth.residence_address,
                birth_registration_no=str(registered["registration_no"]),
                idempotency_key=key,
            )
        elif request.action == "pay_funeral_allowance":
            death = parse_form(request, DeathForm, agency=AGENCY)
            registered = earlier_result(request, "registration_no", agency=AGENCY)
            beneficiary = death.allowance_beneficiary or death.declarant
            accepted = await self.client.submit_funeral_allowance(
                dossier_code=request.dossier_code,
                deceased=Insured(
                    personal_id=death.deceased.citizen_id,
                    full_name=death.deceased.full_name,
                    date_of_birth=death.deceased.date_of_birth,
                ),
                date_of_death=death.date_of_death,
                beneficiary=Insured(personal_id=beneficiary.citizen_id, full_name=beneficiary.full_name),
                death_registration_no=str(registered["registration_no"]),
                idempotency_key=key,
            )
        else:
            raise AgencyProtocolError(
                f"the social insurance connector does not serve {request.action!r}", agency=AGENCY
            )
        return Pending(poll_token=accepted.request_id, reference=accepted.request_id)

    async def poll(self, poll_token: str) -> HandoffResult:
        state = await self.client.get_request(poll_token)
        if state.status == "PROCESSING":
            return Pending(poll_token=state.request_id, reference=state.request_id)
        if state.status == "REJECTED":
            reason = state.rejection.message if state.rejection else "Hồ sơ bị từ chối"
            return Rejected(reason=reason, reference=state.request_id)
        if state.type == "CHILD_HEALTH_CARD":
            card = self.client.health_card(state)
            result = {
                "health_card_no": card.card_no,
                "valid_from": card.valid_from.isoformat(),
                "valid_to": card.valid_to.isoformat(),
            }
            return Completed(result=result, reference=card.card_no)
        allowance = self.client.funeral_allowance(state)
        return Completed(
            result={"decision_no": allowance.decision_no, "amount_vnd": allowance.amount_vnd},
            reference=allowance.decision_no,
        )

"""Typed async client for the social insurance API (camelCase JSON; every request an asynchronous job).

    request_id = await bhxh.submit_health_card(..., idempotency_key=handoff_id)
    status = await bhxh.get_request(request_id)      # PROCESSING, then APPROVED or REJECTED

Errors: ``connectors.errors`` — ``AgencyUnavailable`` (5xx, 429, timeouts, connection errors, the same
request still running there), ``AgencyProtocolError`` (a garbled reply, any other 4xx, an unknown
request). A rejection is not an error here: it is a ``REJECTED`` status with its reason.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from connectors import AgencyClient, AgencyProtocolError

AGENCY = "social_insurance"
RequestStatus = Literal["PROCESSING", "APPROVED", "REJECTED"]
R = TypeVar("R", bound=BaseModel)


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore")


class Insured(_Camel):
    personal_id: str
    full_name: str
    date_of_birth: date | None = None
    sex: Literal["male", "female"] | None = None


class Rejection(_Camel):
    code: str
    message: str


class Accepted(_Camel):
    request_id: str
    status: RequestStatus


class RequestState(_Camel):
    request_id: str
    type: Literal["CHILD_HEALTH_CARD", "FUNERAL_ALLOWANCE"]
    status: RequestStatus
    result: dict[str, Any] | None = None
    rejection: Rejection | None = None


class HealthCard(_Camel):
    card_no: str
    valid_from: date
    valid_to: date


class FuneralAllowance(_Camel):
    decision_no: str
    amount_vnd: int


class SocialInsuranceClient(AgencyClient):
    agency = AGENCY

    async def submit_health_card(
        self,
        *,
        dossier_code: str,
        child: Insured,
        address: str,
        birth_registration_no: str,
        idempotency_key: str,
    ) -> Accepted:
        body = {
            "type": "CHILD_HEALTH_CARD",
            "dossierCode": dossier_code,
            "child": child.model_dump(mode="json", by_alias=True),
            "address": address,
            "birthRegistrationNo": birth_registration_no,
        }
        return await self._submit(body, idempotency_key)

    async def submit_funeral_allowance(
        self,
        *,
        dossier_code: str,
        deceased: Insured,
        date_of_death: date,
        beneficiary: Insured,
        death_registration_no: str,
        idempotency_key: str,
    ) -> Accepted:
        body = {
            "type": "FUNERAL_ALLOWANCE",
            "dossierCode": dossier_code,
            "deceased": deceased.model_dump(mode="json", by_alias=True),
            "dateOfDeath": date_of_death.isoformat(),
            "beneficiary": beneficiary.model_dump(mode="json", by_alias=True, exclude={"date_of_birth"}),
            "deathRegistrationNo": death_registration_no,
        }
        return await self._submit(body, idempotency_key)

    async def get_request(self, request_id: str) -> RequestState:
        response = await self._request("GET", f"/bhxh/api/requests/{request_id}")
        return self._model(RequestState, self._json(response), response)

    def health_card(self, state: RequestState) -> HealthCard:
        return self._result(HealthCard, state)

    def funeral_allowance(self, state: RequestState) -> FuneralAllowance:
        return self._result(FuneralAllowance, state)

    def _result(self, model: type[R], state: RequestState) -> R:
        if state.result is None:
            raise AgencyProtocolError(
                f"request {state.request_id} is {state.status} without a result", agency=AGENCY
            )
        return self._model(model, state.result)

    async def _submit(self, body: dict[str, Any], idempotency_key: str) -> Accepted:
        response = await self._request(
            "POST", "/bhxh/api/requests", json_body=body, idempotency_key=idempotency_key
        )
        if response.status_code != 202:
            raise AgencyProtocolError(
                f"expected 202, got {response.status_code}", agency=AGENCY, status_code=response.status_code
            )
        return self._model(Accepted, self._json(response), response)

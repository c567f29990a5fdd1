"""Typed async client for the business registration office API (English JSON, RFC 7807 problems).

Errors: ``connectors.errors`` — ``AgencyRejected`` (a 409/422 problem with a business ``code``),
``AgencyUnavailable`` (5xx, 429, timeouts, connection errors, the same request still running there),
``AgencyProtocolError`` (a garbled reply, 400, an idempotency key reused with another body).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from connectors.errors import AgencyProtocolError, AgencyRejected, AgencyUnavailable
from connectors.sandbox_kit.agency_http import AgencyClient
from connectors.sandbox_kit.idempotency import KEY_IN_PROGRESS, KEY_INVALID, KEY_REUSED

AGENCY = "business_registry"
_PROTOCOL_CODES = {KEY_REUSED, KEY_INVALID, "INVALID_REQUEST"}


class Registration(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    business_code: str
    registration_date: date
    status: str


class BusinessRegistryClient(AgencyClient):
    agency = AGENCY

    async def register_household_business(
        self, body: dict[str, Any], *, idempotency_key: str
    ) -> Registration:
        response = await self._http.request(
            "POST", "/v1/household-businesses", json_body=body, idempotency_key=idempotency_key
        )
        self._raise_for_problem(response)
        return self._http.model(Registration, self._http.json(response), response)

    async def get(self, business_code: str) -> dict[str, Any] | None:
        response = await self._http.request("GET", f"/v1/household-businesses/{business_code}")
        if response.status_code == 404:
            return None
        self._raise_for_problem(response)
        return self._http.json(response)

    def _raise_for_problem(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        code, detail = "", response.text[:300]
        try:
            data = self._http.json(response)
            code, detail = str(data.get("code") or data.get("error") or ""), str(data.get("detail") or detail)
        except AgencyProtocolError:
            pass
        if code == KEY_IN_PROGRESS:  # the same request is still running there: try again later
            raise AgencyUnavailable(detail, agency=AGENCY, status_code=response.status_code)
        if response.status_code in (409, 422) and code and code not in _PROTOCOL_CODES:
            raise AgencyRejected(detail, code=code, agency=AGENCY, status_code=response.status_code)
        raise AgencyProtocolError(
            f"{code or 'error'}: {detail}", agency=AGENCY, status_code=response.status_code
        )

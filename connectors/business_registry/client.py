"""Typed async client for the business registration office API (English JSON, RFC 7807 problems).

Errors: ``connectors.errors`` — ``AgencyRejected`` (a 409/422 problem with a business ``code``),
``AgencyUnavailable`` (5xx, 429, timeouts, connection errors, the same request still running there),
``AgencyProtocolError`` (a garbled reply, 400, an idempotency key reused with another body).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict

from connectors import AgencyClient

AGENCY = "business_registry"


class Registration(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    business_code: str
    registration_date: date
    status: str


class BusinessRegistryClient(AgencyClient):
    agency = AGENCY
    rejection_statuses = frozenset({409, 422})  # RFC 7807 problems: {code, detail}

    async def register_household_business(
        self, body: dict[str, Any], *, idempotency_key: str
    ) -> Registration:
        response = await self._request(
            "POST", "/v1/household-businesses", json_body=body, idempotency_key=idempotency_key
        )
        return self._model(Registration, self._json(response), response)

    async def get(self, business_code: str) -> dict[str, Any] | None:
        response = await self._request("GET", f"/v1/household-businesses/{business_code}", reads=(404,))
        if response.status_code == 404:
            return None
        return self._json(response)

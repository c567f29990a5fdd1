"""The business registry connector: household business registration (đăng ký hộ kinh doanh).

- ``register_household_business`` (household_business form) → ``{business_code, registered_on}``;
  reference: the business code. The office answers synchronously; a refusal (the name is taken, the
  owner has a household business already) is ``AgencyRejected`` with the office's reason.

The tax leg that follows (``tax.register_household_tax``) reads the same form; the business code is
among its ``inputs`` for when the tax authority asks for it.
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
    parse_form,
)
from connectors.business_registry.client import AGENCY, BusinessRegistryClient
from schemas.agencies import Agency
from schemas.forms import HouseholdBusinessForm


class BusinessRegistrySettings(AgencySettings):
    """From ``LIENTHONG_BUSINESS_REGISTRY_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="LIENTHONG_BUSINESS_REGISTRY_", extra="ignore")

    url: str = "http://127.0.0.1:8205"


class BusinessRegistryConnector(HttpConnector[BusinessRegistrySettings, BusinessRegistryClient]):
    agency: ClassVar[Agency] = Agency.BUSINESS_REGISTRY
    actions: ClassVar[frozenset[str]] = frozenset({"register_household_business"})

    settings_class = BusinessRegistrySettings
    client_class = BusinessRegistryClient

    async def handle(self, request: HandoffRequest) -> HandoffResult:
        if request.action != "register_household_business":
            raise AgencyProtocolError(
                f"the business registry does not serve {request.action!r}", agency=AGENCY
            )
        form = parse_form(request, HouseholdBusinessForm, agency=AGENCY)
        body = {
            "dossier_code": request.dossier_code,
            "business_name": form.business_name,
            "owner": {
                "citizen_id": form.owner.citizen_id,
                "full_name": form.owner.full_name,
                "date_of_birth": form.owner.date_of_birth.isoformat(),
            },
            "address": form.business_address,
            "line_of_business": form.line_of_business,
            "capital_vnd": form.capital_vnd,
        }
        registration = await self.client.register_household_business(body, idempotency_key=request.handoff_id)
        return Completed(
            result={
                "business_code": registration.business_code,
                "registered_on": registration.registration_date.isoformat(),
            },
            reference=registration.business_code,
        )

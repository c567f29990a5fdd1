"""The business registry connector: household business registration (đăng ký hộ kinh doanh).

- ``register_household_business`` (household_business form) → ``{business_code, registered_on}``;
  reference: the business code. The office answers synchronously; a refusal (the name is taken, the
  owner has a household business already) is ``AgencyRejected`` with the office's reason.

The tax leg that follows (``tax.register_household_tax``) reads the same form; the business code is
among its ``inputs`` for when the tax authority asks for it.
"""

from __future__ import annotations

from typing import ClassVar

import httpx
from pydantic import Field, ValidationError
from pydantic_core import to_json
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.base import Completed, Connector, HandoffRequest, HandoffResult
from connectors.business_registry.client import AGENCY, BusinessRegistryClient
from connectors.errors import AgencyProtocolError
from schemas.agencies import Agency
from schemas.forms import HouseholdBusinessForm


class BusinessRegistrySettings(BaseSettings):
    """From ``LIENTHONG_BUSINESS_REGISTRY_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="LIENTHONG_BUSINESS_REGISTRY_", extra="ignore")

    url: str = "http://127.0.0.1:8205"
    timeout_s: float = Field(default=10.0, gt=0, description="one HTTP call to the registration office")


def parse_form(request: HandoffRequest) -> HouseholdBusinessForm:
    """The request's form; a form that does not fit breaks the handoff contract."""
    try:
        return HouseholdBusinessForm.model_validate_json(to_json(request.form))
    except ValidationError as exc:
        raise AgencyProtocolError(
            f"{request.action}: the {request.form_kind!r} form is not a valid HouseholdBusinessForm: "
            f"{exc.errors(include_input=False, include_url=False)}",
            agency=AGENCY,
        ) from exc


class BusinessRegistryConnector(Connector):
    agency: ClassVar[Agency] = Agency.BUSINESS_REGISTRY
    actions: ClassVar[frozenset[str]] = frozenset({"register_household_business"})

    def __init__(
        self,
        settings: BusinessRegistrySettings | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings or BusinessRegistrySettings()
        self._transport = transport
        self._client: BusinessRegistryClient | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = BusinessRegistryClient(
                self.settings.url, timeout=self.settings.timeout_s, transport=self._transport
            )

    async def stop(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    @property
    def client(self) -> BusinessRegistryClient:
        if self._client is None:
            raise RuntimeError("BusinessRegistryConnector.start() was not called")
        return self._client

    async def handle(self, request: HandoffRequest) -> HandoffResult:
        if request.action != "register_household_business":
            raise AgencyProtocolError(
                f"the business registry does not serve {request.action!r}", agency=AGENCY
            )
        form = parse_form(request)
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

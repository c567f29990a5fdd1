"""What every HTTP connector shares: its settings, its client's lifecycle, and reading a request.

A connector subclasses :class:`HttpConnector` with its settings and client classes (the client an
:class:`~connectors.agency_client.AgencyClient`) and implements ``handle`` (and ``poll`` when work
finishes later); ``start``/``stop`` and the ``client`` property come from here. :func:`parse_form`
and :func:`earlier_result` read a request the same way in every adapter.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import to_json
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.agency_client import AgencyClient
from connectors.base import Connector, HandoffRequest
from connectors.errors import AgencyProtocolError


class AgencySettings(BaseSettings):
    """Where an agency system answers. A subclass sets its ``LIENTHONG_<AGENCY>_`` prefix and url."""

    model_config = SettingsConfigDict(extra="ignore")

    url: str
    timeout_s: float = Field(default=10.0, gt=0, description="one HTTP call to the agency system")


SettingsT = TypeVar("SettingsT", bound=AgencySettings)
ClientT = TypeVar("ClientT", bound=AgencyClient)
FormT = TypeVar("FormT", bound=BaseModel)


class HttpConnector(Connector, Generic[SettingsT, ClientT]):
    """A connector with one HTTP client to its agency, opened by ``start`` and closed by ``stop``.

    The runtime constructs it with no arguments (settings come from the environment); tests pass
    settings and an ``httpx`` transport (e.g. ``ASGITransport`` over the sandbox app).
    """

    settings_class: type[SettingsT]
    client_class: type[ClientT]

    def __init__(
        self, settings: SettingsT | None = None, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.settings: SettingsT = settings or self.settings_class()
        self._transport = transport
        self._client: ClientT | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = self.client_class(
                self.settings.url, timeout=self.settings.timeout_s, transport=self._transport
            )

    async def stop(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    @property
    def client(self) -> ClientT:
        if self._client is None:
            raise RuntimeError(f"{type(self).__name__}.start() was not called")
        return self._client


def parse_form(request: HandoffRequest, model: type[FormT], *, agency: str) -> FormT:
    """The request's form as ``model``; a form that does not fit breaks the handoff contract."""
    try:
        return model.model_validate_json(to_json(request.form))
    except ValidationError as exc:
        raise AgencyProtocolError(
            f"{request.action}: the {request.form_kind!r} form is not a valid {model.__name__}: "
            f"{exc.errors(include_input=False, include_url=False)}",
            agency=agency,
        ) from exc


def earlier_result(request: HandoffRequest, *keys: str, agency: str) -> dict[str, Any]:
    """The one earlier leg's result holding every key in ``keys`` (found by content, never by step id)."""
    found = [result for result in request.inputs.values() if all(result.get(key) for key in keys)]
    if len(found) != 1:
        raise AgencyProtocolError(
            f"{request.action} needs exactly one earlier result with {', '.join(keys)}, found {len(found)}",
            agency=agency,
        )
    return found[0]

"""The base of every typed agency client: one ``httpx.AsyncClient`` to the agency system, and every
failure of a call turned into :mod:`connectors.errors` the same way.

A client subclass sets ``agency`` (and, where its agency differs, ``rejection_statuses`` and
``error_body``) and writes the agency's operations with :meth:`AgencyClient._request`,
:meth:`AgencyClient._json` and :meth:`AgencyClient._model`::

    class BusinessRegistryClient(AgencyClient):
        agency = "business_registry"
        rejection_statuses = frozenset({409, 422})  # its refusals: RFC 7807 problems with a code

        async def get(self, business_code: str) -> dict[str, Any] | None:
            response = await self._request("GET", f"/v1/household-businesses/{business_code}", reads=(404,))
            return None if response.status_code == 404 else self._json(response)

What a call raises:

- a timeout, a refused or dropped connection → ``AgencyUnavailable``;
- an error answer → what :data:`connectors.agency_errors.ERROR_TABLE` says (unless the call reads
  that status itself, ``reads=(404,)``);
- a reply that is not JSON, or does not fit the reply model → ``AgencyProtocolError``.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any, ClassVar, Self, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from connectors.agency_errors import JSON_ERROR_BODY, ErrorBodyFormat, raise_for_agency_error
from connectors.errors import AgencyProtocolError, AgencyUnavailable
from connectors.idempotency_key import HEADER as IDEMPOTENCY_HEADER

M = TypeVar("M", bound=BaseModel)


class AgencyClient:
    """An agency system's API over HTTP, opened by the constructor and closed by ``aclose``.

    ``HttpConnector`` builds it as ``Client(url, timeout=…, transport=…)``; tests pass an
    ``httpx.ASGITransport`` over the sandbox app.
    """

    agency: ClassVar[str]
    rejection_statuses: ClassVar[frozenset[int]] = frozenset()
    """Statuses the agency answers a business refusal with (its code in the body); none by default."""
    error_body: ClassVar[ErrorBodyFormat] = JSON_ERROR_BODY
    """Where the agency's error body names its code and its words."""

    def __init__(
        self, base_url: str, *, timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        idempotency_key: str | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        reads: Collection[int] = (),
        rejection_statuses: Collection[int] | None = None,
    ) -> httpx.Response:
        """Call the agency; return a success, or an error answer whose status is in ``reads``.

        ``rejection_statuses`` replaces the client's for this call (an endpoint that refuses otherwise).
        """
        all_headers = dict(headers or {})
        if idempotency_key is not None:
            all_headers[IDEMPOTENCY_HEADER] = idempotency_key
        try:
            response = await self._client.request(
                method, path, json=json_body, content=content, headers=all_headers
            )
        except httpx.TimeoutException as exc:
            raise AgencyUnavailable(
                f"timed out calling {method} {path}: {exc!r}", agency=self.agency
            ) from exc
        except httpx.TransportError as exc:
            raise AgencyUnavailable(
                f"connection failed for {method} {path}: {exc!r}", agency=self.agency
            ) from exc
        if response.status_code not in reads:
            raise_for_agency_error(
                response,
                agency=self.agency,
                rejection_statuses=self.rejection_statuses
                if rejection_statuses is None
                else rejection_statuses,
                error_body=self.error_body,
            )
        return response

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        """The reply as a JSON object."""
        try:
            data = json.loads(response.content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise AgencyProtocolError(
                f"reply is not JSON: {response.content[:80]!r}",
                agency=self.agency,
                status_code=response.status_code,
            ) from exc
        if not isinstance(data, dict):
            raise AgencyProtocolError(
                "reply is not a JSON object", agency=self.agency, status_code=response.status_code
            )
        return data

    def _model(self, model: type[M], data: Any, response: httpx.Response | None = None) -> M:
        """``data`` (part of a reply) as ``model``."""
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise AgencyProtocolError(
                f"reply does not match {model.__name__}: {exc.errors(include_url=False)}",
                agency=self.agency,
                status_code=response.status_code if response is not None else None,
            ) from exc

    async def aclose(self) -> None:
        """Close the HTTP client; the client cannot be used afterwards."""
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

"""The HTTP plumbing shared by the agency clients: one ``httpx.AsyncClient`` and the mapping of
transport failures to ``connectors.errors``.

Mapping (the clients add their own business mapping for 4xx bodies):

- timeout, refused or dropped connection, 5xx, 429  → ``AgencyUnavailable``
- a reply that cannot be decoded or lacks fields  → ``AgencyProtocolError``
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Self, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from connectors.errors import AgencyProtocolError, AgencyUnavailable
from connectors.sandbox_kit.idempotency import HEADER as IDEMPOTENCY_HEADER
from connectors.sandbox_kit.idempotency import KEY_IN_PROGRESS

M = TypeVar("M", bound=BaseModel)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class AgencyHttp:
    """A thin wrapper over ``httpx.AsyncClient`` for one agency."""

    def __init__(
        self,
        agency: str,
        base_url: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.agency = agency
        self.client = httpx.AsyncClient(
            base_url=base_url, timeout=timeout, transport=transport, headers=headers
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        idempotency_key: str | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        all_headers = dict(headers or {})
        if idempotency_key is not None:
            all_headers[IDEMPOTENCY_HEADER] = idempotency_key
        try:
            response = await self.client.request(
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
        if response.status_code >= 500 or response.status_code == 429:
            raise AgencyUnavailable(
                f"{method} {path} answered {response.status_code}: {response.text[:200]}",
                agency=self.agency,
                status_code=response.status_code,
                retry_after=_retry_after(response),
            )
        return response

    def raise_if_in_progress(self, response: httpx.Response) -> None:
        """A 409 saying the same idempotent request is still running at the agency: try again later."""
        if response.status_code == 409 and KEY_IN_PROGRESS.encode() in response.content:
            raise AgencyUnavailable(
                f"{response.request.method} {response.request.url.path}: {KEY_IN_PROGRESS}",
                agency=self.agency,
                status_code=409,
            )

    def raise_for_client_error(self, response: httpx.Response) -> None:
        """Any other 4xx is a request the agency will never accept as sent."""
        self.raise_if_in_progress(response)
        if response.status_code >= 400:
            raise AgencyProtocolError(
                f"{response.request.method} {response.request.url.path} answered {response.status_code}: "
                f"{response.text[:300]}",
                agency=self.agency,
                status_code=response.status_code,
            )

    def json(self, response: httpx.Response) -> dict[str, Any]:
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

    def model(self, model: type[M], data: Any, response: httpx.Response) -> M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise AgencyProtocolError(
                f"reply does not match {model.__name__}: {exc.errors(include_url=False)}",
                agency=self.agency,
                status_code=response.status_code,
            ) from exc

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class AgencyClient:
    """Base of the typed clients: one :class:`AgencyHttp` to the agency, closed by ``aclose``.

    A client subclass sets ``agency`` and adds the agency's operations on ``self._http``.
    """

    agency: ClassVar[str]

    def __init__(
        self, base_url: str, *, timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._http = AgencyHttp(self.agency, base_url, timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

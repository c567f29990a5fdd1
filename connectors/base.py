"""The connector contract: the smallest thing an agency adapter implements.

A connector turns one handoff request into an outcome by calling its agency system's own API. It never
touches Kafka, retries, metrics or signing: the connector host (``services.connector.host``)
wraps every connector the same way.

Lifecycle, driven by the runtime::

    connector = MyConnector(settings)
    await connector.start()                  # open HTTP clients
    result = await connector.handle(request) # once per handoff request (maybe again on redelivery)
    result = await connector.poll(token)     # later, for a Pending or WaitingOnCitizen result
    await connector.stop()

``handle`` may be called more than once for the same request (redelivery after a crash, a retry):
it must pass ``request.handoff_id`` to the agency as the idempotency key so the agency acts once.

What ``handle`` returns, or raises:

- :class:`Completed` — the agency did its part; ``result`` flows to later steps as their input;
- :class:`Rejected` — a business rejection (the parcel does not exist): the dossier goes back to the
  citizen with ``reason``; never retried;
- :class:`WaitingOnCitizen` — the agency waits for the citizen (a tax notice to pay); the runtime
  publishes that, then polls with ``poll_token`` until :meth:`Connector.poll` returns a final result;
- :class:`Pending` — accepted, finishing later; the runtime polls the same way without telling anyone;
- raising :class:`connectors.errors.AgencyUnavailable` (timeouts, 5xx, 429, connection errors) — the
  runtime retries; :class:`connectors.errors.AgencyProtocolError` (a reply it cannot understand) —
  the runtime does not retry blindly and dead-letters the request with the message.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from schemas.agencies import Agency

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class Completed:
    """The agency did its part; ``result`` flows to later legs as their ``inputs`` (never a name or a
    citizen id)."""

    result: JsonObject = field(default_factory=dict)
    reference: str | None = None  # the agency's own number for the act (registration no., notice no.)


@dataclass(frozen=True)
class Rejected:
    """A business refusal: the dossier goes back to the citizen with ``reason``, the agency's words."""

    reason: str
    reference: str | None = None


@dataclass(frozen=True)
class WaitingOnCitizen:
    """The agency waits for the citizen (a notice to pay): the dossier's clock may pause; the runtime
    polls with ``poll_token``."""

    reason: str
    poll_token: str
    result: JsonObject = field(default_factory=dict)  # e.g. the payment notice with its amounts
    reference: str | None = None


@dataclass(frozen=True)
class Pending:
    """Accepted, finishing later: the runtime polls with ``poll_token`` and tells no one meanwhile."""

    poll_token: str
    reference: str | None = None


HandoffResult = Completed | Rejected | WaitingOnCitizen | Pending
"""What ``handle`` and ``poll`` return."""

FINAL_RESULTS = (Completed, Rejected)
"""The results after which nothing more happens to the handoff."""


@dataclass(frozen=True)
class HandoffRequest:
    """What a connector needs of a ``HandoffRequested`` event, free of envelope and Kafka details."""

    handoff_id: str
    dossier_id: str
    dossier_code: str
    procedure_code: str
    step_id: str
    action: str
    form_kind: str
    form: JsonObject
    inputs: dict[str, JsonObject] = field(default_factory=dict)  # earlier legs' results by step id


class Connector(ABC):
    """Adapts one agency system. Subclasses set ``agency`` and ``actions`` and implement ``handle``."""

    agency: ClassVar[Agency]
    actions: ClassVar[frozenset[str]]

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open clients; called once before the first request."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Close clients; called once at shutdown."""

    @abstractmethod
    async def handle(self, request: HandoffRequest) -> HandoffResult:
        """Carry out ``request.action`` at the agency (idempotently, keyed by ``request.handoff_id``)."""

    async def poll(self, poll_token: str) -> HandoffResult:
        """Learn how a Pending or WaitingOnCitizen result ended; return it unchanged while it has not."""
        raise NotImplementedError(f"{type(self).__name__} returned a pending result but cannot poll")

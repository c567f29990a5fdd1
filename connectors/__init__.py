"""Liên Thông's connectors: everything a new agency connector needs, importable from here.

The contract (:mod:`connectors.base`)::

    Connector                the class an adapter subclasses: agency, actions, handle (and poll)
    HandoffRequest           one leg of a dossier to carry out, free of Kafka and envelopes
    HandoffResult            Completed | Rejected | WaitingOnCitizen | Pending

The errors a client raises (:mod:`connectors.errors`; the runtime classifies by class)::

    ConnectorError
    ├── AgencyRejected       the agency said no, with its reason: never retried
    ├── AgencyUnavailable    timeout, 5xx, 429, down: retried, then delayed, then dead-lettered
    └── AgencyProtocolError  a reply or a request that breaks the contract: dead-lettered for a human

Talking HTTP to an agency (:mod:`connectors.http_connector`, :mod:`connectors.agency_client`,
:mod:`connectors.agency_errors`): ``HttpConnector`` with its ``AgencySettings`` and an
``AgencyClient``, whose calls raise what ``raise_for_agency_error``'s table says (``JsonErrorBody``
or an agency's own reader giving an ``ErrorBody``); ``parse_form`` and ``earlier_result`` read a request.

Not here, on purpose: the sandbox kit (``connectors.sandbox_kit``, FastAPI and a store) and the
conformance kit (``connectors.testing``, pytest) are for tests and the local stack; production code
never imports them.
"""

from connectors.agency_client import AgencyClient
from connectors.agency_errors import ErrorBody, JsonErrorBody, raise_for_agency_error
from connectors.base import (
    Completed,
    Connector,
    HandoffRequest,
    HandoffResult,
    Pending,
    Rejected,
    WaitingOnCitizen,
)
from connectors.errors import AgencyProtocolError, AgencyRejected, AgencyUnavailable, ConnectorError
from connectors.http_connector import AgencySettings, HttpConnector, earlier_result, parse_form

__all__ = [
    "AgencyClient",
    "AgencyProtocolError",
    "AgencyRejected",
    "AgencySettings",
    "AgencyUnavailable",
    "Completed",
    "Connector",
    "ConnectorError",
    "ErrorBody",
    "HandoffRequest",
    "HandoffResult",
    "HttpConnector",
    "JsonErrorBody",
    "Pending",
    "Rejected",
    "WaitingOnCitizen",
    "earlier_result",
    "parse_form",
    "raise_for_agency_error",
]

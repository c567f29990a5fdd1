"""Every failure is classified here, in one table, and nowhere else.

=================  ===========================================  ===================================
class              what raised it                               what the runtime does
=================  ===========================================  ===================================
transient          AgencyUnavailable (timeout, refused, 5xx,    in-process retries, then the delayed
                   429, an agency job that failed)              retry tiers, then the dead letters
business           AgencyRejected (the parcel does not exist)   an outcome: the dossier goes back to
                                                                the citizen; never retried
poison             EventContractError (unparseable, schema-     straight to the dead-letter topic,
                   invalid, unknown type or version, missing    never retried
                   headers, oversized, wrong agency)
protocol           AgencyProtocolError (a reply we cannot       dead letter: a human must look
                   read, a request the agency cannot accept)
internal           anything else raised by an adapter or a      dead letter with its reason, so that
                   handler (a bug, an answer that does not      one bad record never blocks its
                   fit the outcome contract, a state that no    partition and is never handled twice
                   longer validates)
infrastructure     the service's own store failed (SQLite       not the record's fault: redelivered
                   locked or out of disk: ``StoreUnavailable``, after a backoff, never dead-lettered
                   ``sqlite3.OperationalError``, ``OSError``)
=================  ===========================================  ===================================
"""

from __future__ import annotations

import sqlite3
from enum import StrEnum

from pydantic import ValidationError

from connectors.errors import AgencyProtocolError, AgencyRejected, AgencyUnavailable
from schemas.errors import EventContractError


class FailureClass(StrEnum):
    TRANSIENT = "transient"
    BUSINESS = "business"
    POISON = "poison"
    PROTOCOL = "protocol"
    INTERNAL = "internal"
    INFRASTRUCTURE = "infrastructure"

    @property
    def retried(self) -> bool:
        return self is FailureClass.TRANSIENT

    @property
    def redelivered(self) -> bool:
        """The record comes again (its offset is not committed) instead of being settled."""
        return self is FailureClass.INFRASTRUCTURE


class StoreUnavailable(Exception):
    """A service's store cannot be used right now (raised by store implementations)."""


_TABLE: tuple[tuple[type[BaseException], FailureClass], ...] = (
    (AgencyUnavailable, FailureClass.TRANSIENT),
    (TimeoutError, FailureClass.TRANSIENT),
    (AgencyRejected, FailureClass.BUSINESS),
    (EventContractError, FailureClass.POISON),
    (AgencyProtocolError, FailureClass.PROTOCOL),
    (StoreUnavailable, FailureClass.INFRASTRUCTURE),
    (sqlite3.OperationalError, FailureClass.INFRASTRUCTURE),
    (OSError, FailureClass.INFRASTRUCTURE),
    (MemoryError, FailureClass.INFRASTRUCTURE),
)


def classify(error: BaseException) -> FailureClass:
    for kind, failure_class in _TABLE:
        if isinstance(error, kind):
            return failure_class
    return FailureClass.INTERNAL


def describe(error: BaseException, limit: int = 500) -> str:
    """A failure's reason for a dead letter or a log, without the values it was given: a pydantic
    ``ValidationError`` prints the offending input (maybe personal data), so only its locations and
    messages are kept."""
    if isinstance(error, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
            for e in error.errors(include_input=False, include_url=False)
        ]
        text = f"{error.title} is invalid: " + "; ".join(parts)
    else:
        text = str(error) or type(error).__name__
    return text[:limit]

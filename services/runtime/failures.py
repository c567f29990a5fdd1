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
internal           anything else raised by an adapter (a bug)   dead letter, so that one bad record
                                                                never blocks the agency's partition
=================  ===========================================  ===================================
"""

from __future__ import annotations

from enum import StrEnum

from connectors.errors import AgencyProtocolError, AgencyRejected, AgencyUnavailable
from schemas.errors import EventContractError


class FailureClass(StrEnum):
    TRANSIENT = "transient"
    BUSINESS = "business"
    POISON = "poison"
    PROTOCOL = "protocol"
    INTERNAL = "internal"

    @property
    def retried(self) -> bool:
        return self is FailureClass.TRANSIENT


_TABLE: tuple[tuple[type[BaseException], FailureClass], ...] = (
    (AgencyUnavailable, FailureClass.TRANSIENT),
    (TimeoutError, FailureClass.TRANSIENT),
    (AgencyRejected, FailureClass.BUSINESS),
    (EventContractError, FailureClass.POISON),
    (AgencyProtocolError, FailureClass.PROTOCOL),
)


def classify(error: BaseException) -> FailureClass:
    for kind, failure_class in _TABLE:
        if isinstance(error, kind):
            return failure_class
    return FailureClass.INTERNAL

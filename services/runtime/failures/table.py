"""Every failure is classified here, in one table, and nowhere else.

Each row says everything the runtime does with one class of failure; the consumer
(:mod:`services.runtime.consume.consumer`) and the connector host (:mod:`services.connector.host`)
read the row instead of deciding for themselves.

==============  =====================================  =======  ==========  ===========  ==========  =========
class           raised by                              blips    delay tiers  outcome      call result circuit
                                                       retried  then DL      published    (agency)    breaker
==============  =====================================  =======  ==========  ===========  ==========  =========
transient       AgencyUnavailable (timeout, refused,   yes      yes         dead_letter- transient   failure
                5xx, 429, a job the agency failed),                         ed, after
                TimeoutError                                                the tiers
business        AgencyRejected (the parcel does not    no       no          rejected     rejected    success
                exist)
signature       SignatureError (missing, unknown or    no       no          none (the    —           —
                wrong signature; a replay or retry                          record is
                header without a valid signature)                           never read)
authorization   NotTheAgencysOutcome (an outcome not   no       no          none (never  —           —
                from the connector of the leg's                             applied)
                agency, or naming another agency),
                NotAllowedToRedeliver (a replay or
                retry header signed by a producer
                that may not set it), EventTooOld
                (older than LIENTHONG_MAX_EVENT_AGE
                and not an operator's replay),
                NotAnOperatorTool (an operator action
                not recorded by the tracker or the
                dead-letter tool)
poison          EventContractError (unparseable,       no       no          none         —           —
                schema-invalid, unknown type or
                version, missing headers, oversized,
                wrong agency, unknown dossier)
protocol        AgencyProtocolError (a reply we        no       no          dead_letter- protocol    inconclu-
                cannot read, a request the agency                           ed                       sive
                cannot accept, an answer that does
                not fit the outcome contract)
internal        anything else a handler or adapter     no       no          dead_letter- protocol    inconclu-
                raises (a bug, a state or catalog it                        ed                       sive
                no longer fits)
infrastructure  the service's own store failed         no       no          none: the    transient   failure
                (StoreUnavailable, OperationalError                         record comes
                of SQLite or PostgreSQL, OSError,                           again
                MemoryError)
==============  =====================================  =======  ==========  ===========  ==========  =========

Every class but ``business`` and ``infrastructure`` ends in a dead letter of that error class (the
original record, its story in headers). ``infrastructure`` is not the record's fault: the record is
redelivered after a backoff and never dead-lettered; met on the way to an agency (an OS error under
its client), it counts as that agency's transient failure. An *inconclusive* answer proves nothing
about the agency's health: it ends a half-open probe and closes nothing
(:mod:`services.runtime.failures.circuit`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from enum import StrEnum

import psycopg
from pydantic import ValidationError

from connectors.errors import AgencyProtocolError, AgencyRejected, AgencyUnavailable
from schemas.authority import NotAnOperatorTool, NotTheAgencysOutcome
from schemas.errors import EventContractError, SignatureError
from services.runtime.trust.header_signing import EventTooOld, NotAllowedToRedeliver


class FailureClass(StrEnum):
    """A row of the table; the value is the ``error_class`` of a dead letter and of its metrics."""

    TRANSIENT = "transient"
    BUSINESS = "business"
    SIGNATURE = "signature"
    AUTHORIZATION = "authorization"
    POISON = "poison"
    PROTOCOL = "protocol"
    INTERNAL = "internal"
    INFRASTRUCTURE = "infrastructure"


class CallResult(StrEnum):
    """How one call to an agency system ended (each attempt counts, retries included)."""

    OK = "ok"  # an answer: completed, pending or waiting on the citizen
    REJECTED = "rejected"  # a business refusal: a correct answer, not a technical failure
    TRANSIENT = "transient"  # timeout, connection refused, 5xx, 429
    PROTOCOL = "protocol"  # an answer the adapter cannot read


class CircuitEffect(StrEnum):
    """What a failure tells the agency's circuit breaker."""

    FAILURE = "failure"  # counts towards opening; reopens a half-open circuit
    SUCCESS = "success"  # the agency answered: closes the circuit
    INCONCLUSIVE = "inconclusive"  # ends a probe, closes nothing
    NONE = "none"  # not about an agency call


class StoreUnavailable(Exception):
    """A service's store cannot be used right now (raised by store implementations)."""


# The store's database is unreachable or gave up a transaction (a lost connection, a serialization
# failure or a deadlock on PostgreSQL): the record comes again.
_DATABASE_DOWN: tuple[type[BaseException], ...] = (sqlite3.OperationalError, psycopg.OperationalError)


@dataclass(frozen=True)
class FailureRow:
    """One row: everything the runtime does with a class of failure."""

    failure_class: FailureClass
    raised_by: tuple[type[BaseException], ...]
    retried_in_process: bool  # blips retried by tenacity around the agency call
    delayed: bool  # sent through the delay tiers, dead-lettered after the last
    dead_lettered: bool  # ends in a dead letter of this error class (at once, or after the tiers)
    redelivered: bool  # not settled: the record comes again after a backoff
    call_result: CallResult  # the label of a failed agency call
    circuit: CircuitEffect

    @property
    def error_class(self) -> str:
        return self.failure_class.value


TABLE: tuple[FailureRow, ...] = (
    FailureRow(
        FailureClass.TRANSIENT, (AgencyUnavailable, TimeoutError),
        retried_in_process=True, delayed=True, dead_lettered=True, redelivered=False,
        call_result=CallResult.TRANSIENT, circuit=CircuitEffect.FAILURE,
    ),
    FailureRow(
        FailureClass.BUSINESS, (AgencyRejected,),
        retried_in_process=False, delayed=False, dead_lettered=False, redelivered=False,
        call_result=CallResult.REJECTED, circuit=CircuitEffect.SUCCESS,
    ),
    FailureRow(
        FailureClass.SIGNATURE, (SignatureError,),
        retried_in_process=False, delayed=False, dead_lettered=True, redelivered=False,
        call_result=CallResult.PROTOCOL, circuit=CircuitEffect.NONE,
    ),
    FailureRow(
        FailureClass.AUTHORIZATION,
        (NotTheAgencysOutcome, NotAnOperatorTool, NotAllowedToRedeliver, EventTooOld),
        retried_in_process=False, delayed=False, dead_lettered=True, redelivered=False,
        call_result=CallResult.PROTOCOL, circuit=CircuitEffect.NONE,
    ),
    FailureRow(
        FailureClass.POISON, (EventContractError,),
        retried_in_process=False, delayed=False, dead_lettered=True, redelivered=False,
        call_result=CallResult.PROTOCOL, circuit=CircuitEffect.INCONCLUSIVE,
    ),
    FailureRow(
        FailureClass.PROTOCOL, (AgencyProtocolError,),
        retried_in_process=False, delayed=False, dead_lettered=True, redelivered=False,
        call_result=CallResult.PROTOCOL, circuit=CircuitEffect.INCONCLUSIVE,
    ),
    FailureRow(
        FailureClass.INFRASTRUCTURE, (StoreUnavailable, *_DATABASE_DOWN, OSError, MemoryError),
        retried_in_process=False, delayed=False, dead_lettered=False, redelivered=True,
        call_result=CallResult.TRANSIENT, circuit=CircuitEffect.FAILURE,
    ),
)  # fmt: skip
"""The rows, in the order a failure is matched against them (a subclass before its base)."""

INTERNAL = FailureRow(
    FailureClass.INTERNAL, (Exception,),
    retried_in_process=False, delayed=False, dead_lettered=True, redelivered=False,
    call_result=CallResult.PROTOCOL, circuit=CircuitEffect.INCONCLUSIVE,
)  # fmt: skip
"""The row of anything the table does not name."""

DEAD_LETTER_CLASSES: tuple[FailureClass, ...] = tuple(
    row.failure_class for row in (*TABLE, INTERNAL) if row.dead_lettered
)
"""The error classes a dead letter can have (the values of ``lienthong_dead_letters_total``)."""


def classify(error: BaseException) -> FailureRow:
    """The row of ``error``."""
    for row in TABLE:
        if isinstance(error, row.raised_by):
            return row
    return INTERNAL


def classify_agency_call(error: BaseException) -> FailureRow:
    """The row of a failed agency call: an OS-level error on the way to the agency (under its client)
    is that agency's transient failure, not the service's infrastructure."""
    row = classify(error)
    return classify(AgencyUnavailable("")) if row.failure_class is FailureClass.INFRASTRUCTURE else row


def row(failure_class: FailureClass) -> FailureRow:
    """The row of a class, by name."""
    return next(r for r in (*TABLE, INTERNAL) if r.failure_class is failure_class)


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

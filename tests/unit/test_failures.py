"""The failure table: one row per class, each failure matched to the row that says what to do."""

from __future__ import annotations

import sqlite3

import pytest

from connectors.errors import AgencyProtocolError, AgencyRejected, AgencyUnavailable
from schemas.authority import NotTheAgencysOutcome
from schemas.errors import SignatureError, UnparseableEvent
from services.runtime.failures.table import (
    DEAD_LETTER_CLASSES,
    INTERNAL,
    TABLE,
    CallResult,
    CircuitEffect,
    FailureClass,
    StoreUnavailable,
    classify,
    classify_agency_call,
)


def test_every_class_has_exactly_one_row() -> None:
    classes = [row.failure_class for row in (*TABLE, INTERNAL)]
    assert sorted(classes) == sorted(FailureClass)


@pytest.mark.parametrize(
    ("error", "failure_class"),
    [
        (AgencyUnavailable("503"), FailureClass.TRANSIENT),
        (TimeoutError(), FailureClass.TRANSIENT),
        (AgencyRejected("the parcel does not exist"), FailureClass.BUSINESS),
        (SignatureError("unsigned"), FailureClass.SIGNATURE),  # before the contract errors it extends
        (NotTheAgencysOutcome("land about tax"), FailureClass.AUTHORIZATION),  # likewise
        (UnparseableEvent("not JSON"), FailureClass.POISON),
        (AgencyProtocolError("not XML"), FailureClass.PROTOCOL),
        (StoreUnavailable(), FailureClass.INFRASTRUCTURE),
        (sqlite3.OperationalError("database is locked"), FailureClass.INFRASTRUCTURE),
        (KeyError("step"), FailureClass.INTERNAL),
    ],
)
def test_each_failure_finds_its_row(error: BaseException, failure_class: FailureClass) -> None:
    assert classify(error).failure_class is failure_class


def test_what_the_rows_say_the_runtime_does() -> None:
    transient = classify(AgencyUnavailable("503"))
    assert transient.retried_in_process and transient.delayed and transient.dead_lettered
    assert (transient.call_result, transient.circuit) == (CallResult.TRANSIENT, CircuitEffect.FAILURE)
    business = classify(AgencyRejected("no"))
    assert not (business.retried_in_process or business.delayed or business.dead_lettered)
    assert business.circuit is CircuitEffect.SUCCESS, "a refusal is an answer"
    protocol = classify(AgencyProtocolError("maintenance page"))
    assert protocol.dead_lettered and protocol.circuit is CircuitEffect.INCONCLUSIVE
    foreign = classify(NotTheAgencysOutcome("land about tax"))
    assert foreign.dead_lettered and not (foreign.delayed or foreign.redelivered), "never retried"
    store = classify(sqlite3.OperationalError("disk I/O error"))
    assert store.redelivered and not store.dead_lettered, "not the record's fault: it comes again"
    assert set(DEAD_LETTER_CLASSES) == {
        FailureClass.TRANSIENT, FailureClass.SIGNATURE, FailureClass.AUTHORIZATION,
        FailureClass.POISON, FailureClass.PROTOCOL, FailureClass.INTERNAL,
    }  # fmt: skip


def test_an_os_error_on_the_way_to_an_agency_is_that_agency_s_blip() -> None:
    assert classify(ConnectionResetError()).failure_class is FailureClass.INFRASTRUCTURE
    assert classify_agency_call(ConnectionResetError()).failure_class is FailureClass.TRANSIENT

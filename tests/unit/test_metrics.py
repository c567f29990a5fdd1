"""The metric catalogue: Prometheus naming conventions, bounded labels with no personal data, and an
exposition that promtool accepts."""

from __future__ import annotations

import re

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from schemas.agencies import AGENCY_ACTIONS, Agency
from schemas.catalog import load_catalog
from schemas.events import EVENT_TYPES, Channel, ClosedResult, OutcomeKind
from services.runtime.failures.circuit import CircuitState
from services.runtime.failures.table import DEAD_LETTER_CLASSES, CallResult, FailureClass
from services.runtime.observe.metrics import (
    ALL_METRICS,
    CATALOGUE,
    METRICS,
    RETRY_TIER_NAMES,
    LegState,
    MetricKind,
    Metrics,
    MetricSpec,
    OpenDossierState,
    RatioScope,
    RejectionKind,
    Service,
    agency_label,
    build_metrics,
    exposed_series_names,
    procedure_label,
)
from tests.unit.test_metrics_promql import run_promtool

# A label that could carry a dossier, a person or free text makes series unbounded and leaks data.
FORBIDDEN_LABEL = re.compile(
    r"(^|_)(id|ids|uuid|key|name|names|citizen|dossier|person|applicant|address|phone|email|message|"
    r"text|detail|url|path|code)($|_)"
)
NON_BASE_UNITS = re.compile(
    r"_(milliseconds|microseconds|nanoseconds|ms|us|ns|minutes|hours|days|kilobytes|megabytes|kb|mb|"
    r"percent|percentage)(_|$)"
)
PERSONAL_DATA = ("079203001234", "Nguyễn Văn An", "LT-240915-000123")


def _fresh() -> Metrics:
    return build_metrics(CollectorRegistry())


def _touch_everything(metrics: Metrics) -> None:
    """One update of every metric through the helpers the services use."""
    codes = [procedure.code for procedure in load_catalog().procedures]
    metrics.prime(service=Service.INTAKE, agencies=list(Agency), procedures=codes)
    for service in Service:
        bound = metrics.service(service)
        bound.outbox_pending.set(3)
        bound.set_outbox(3, 12.5)
        bound.parked()
        metrics.loop_restarted(service, "OutboxRelay.run")
        bound.poison_records.inc()
        bound.processed(next(iter(EVENT_TYPES)))
    for agency, actions in AGENCY_ACTIONS.items():
        for action in sorted(actions):
            metrics.handoff(agency, action).finished(OutcomeKind.COMPLETED, 0.042)
        bound_agency = metrics.agency(agency)
        bound_agency.called(CallResult.OK)
        bound_agency.called(CallResult.TRANSIENT)
        bound_agency.retried_in_process()
        bound_agency.sent_to_tier(RETRY_TIER_NAMES[0])
        bound_agency.dead_lettered(FailureClass.TRANSIENT)
        bound_agency.circuit(CircuitState.OPEN)
        metrics.set_legs_open(agency, LegState.STUCK, 1)
        metrics.set_on_time_ratio(RatioScope.AGENCY, agency, 0.95)
    metrics.dead_lettered_without_agency(FailureClass.POISON)
    metrics.set_consumer_lag("connector-tax", "handoff.tax.requested", 12)
    metrics.dossier_received(codes[0], Channel.ONLINE)
    metrics.intake_rejected(RejectionKind.INVALID_FIELDS)
    metrics.dossier_closed(codes[0], ClosedResult.COMPLETED, on_time=True)
    metrics.set_dossiers(codes[0], OpenDossierState.OVERDUE, 2)
    metrics.set_apology_slips_due(codes[0], 1)
    metrics.set_waiting_too_long(codes[0], 1)
    metrics.set_on_time_ratio(RatioScope.PROCEDURE, codes[0], 0.9)


def _exposition(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


# --- names and labels ---------------------------------------------------------------------------------


def test_catalogue_names_are_unique() -> None:
    names = [spec.name for spec in CATALOGUE]
    assert len(names) == len(set(names)) == len(ALL_METRICS)


@pytest.mark.parametrize("spec", CATALOGUE, ids=lambda spec: spec.name)
def test_names_follow_prometheus_conventions(spec: MetricSpec) -> None:
    assert re.fullmatch(r"lienthong_[a-z][a-z0-9_]*[a-z0-9]", spec.name)
    assert not NON_BASE_UNITS.search(spec.name), f"{spec.name}: use base units (seconds, bytes, ratio)"
    if spec.kind is MetricKind.COUNTER:
        assert spec.name.endswith("_total")
    else:
        assert not spec.name.endswith("_total")
    if spec.kind is MetricKind.HISTOGRAM:
        assert spec.name.endswith(("_seconds", "_bytes")), "a histogram observes a base unit"
        assert spec.buckets == tuple(sorted(spec.buckets))
    assert spec.help.strip()


@pytest.mark.parametrize("spec", CATALOGUE, ids=lambda spec: spec.name)
def test_labels_are_bounded_and_carry_no_personal_data(spec: MetricSpec) -> None:
    assert len(spec.labels) <= 3, "more labels multiply series"
    for label in spec.labels:
        assert re.fullmatch(r"[a-z][a-z_]*", label)
        assert not FORBIDDEN_LABEL.search(label), f"{spec.name}: label {label!r} could be unbounded"


def test_histogram_buckets_span_5_ms_to_60_s() -> None:
    (histogram,) = [spec for spec in CATALOGUE if spec.kind is MetricKind.HISTOGRAM]
    assert histogram.buckets[0] == 0.005
    assert histogram.buckets[-1] == 60.0


def test_the_issue_s_metrics_are_declared() -> None:
    expected = {
        "lienthong_handoff_duration_seconds": ("agency", "action"),
        "lienthong_handoff_outcomes_total": ("agency", "action", "kind"),
        "lienthong_agency_call_retries_total": ("agency",),
        "lienthong_delayed_retries_total": ("agency", "tier"),
        "lienthong_dead_letters_total": ("agency", "error_class"),
        "lienthong_circuit_state": ("agency",),
        "lienthong_circuit_open_total": ("agency",),
        "lienthong_consumer_lag_records": ("group", "topic"),
        "lienthong_dossiers": ("procedure", "state"),
        "lienthong_legs_open": ("agency", "state"),
        "lienthong_apology_slips_due": ("procedure",),
        "lienthong_dossiers_closed_total": ("procedure", "result", "on_time"),
        "lienthong_on_time_ratio": ("scope", "subject"),
        "lienthong_dossiers_received_total": ("procedure", "channel"),
        "lienthong_intake_rejections_total": ("reason_kind",),
        "lienthong_outbox_pending_records": ("service",),
        "lienthong_events_processed_total": ("service", "event_type"),
        "lienthong_poison_records_total": ("service",),
    }
    declared = {spec.name: spec.labels for spec in CATALOGUE}
    for name, labels in expected.items():
        assert declared.get(name) == labels, name


# --- registry and exposition ------------------------------------------------------------------------------


def test_build_metrics_registers_exactly_the_catalogue() -> None:
    metrics = _fresh()
    _touch_everything(metrics)
    families = {family.name: family.type for family in metrics.registry.collect()}
    declared = {spec.name.removesuffix("_total"): spec.kind.value for spec in CATALOGUE}
    assert families == declared


def test_every_exposed_sample_is_in_the_catalogue() -> None:
    metrics = _fresh()
    _touch_everything(metrics)
    samples = {
        sample.name
        for family in text_string_to_metric_families(_exposition(metrics))
        for sample in family.samples
    }
    assert samples <= exposed_series_names()
    assert {spec.name for spec in CATALOGUE if spec.kind is not MetricKind.HISTOGRAM} <= samples


def test_promtool_check_metrics_passes() -> None:
    metrics = _fresh()
    _touch_everything(metrics)
    run_promtool("check", "metrics", stdin=_exposition(metrics).encode())


def test_the_default_instance_is_in_the_default_registry() -> None:
    assert METRICS.registry is REGISTRY
    names = {family.name for family in REGISTRY.collect()}
    assert {spec.name.removesuffix("_total") for spec in CATALOGUE} <= names


def test_a_registry_takes_the_catalogue_once() -> None:
    registry = CollectorRegistry()
    build_metrics(registry)
    with pytest.raises(ValueError, match="Duplicated"):
        build_metrics(registry)


def test_series_count_is_bounded() -> None:
    """Everything primed for every agency and procedure, every helper used: a few thousand series at most."""
    metrics = _fresh()
    _touch_everything(metrics)
    samples = [
        sample for family in text_string_to_metric_families(_exposition(metrics)) for sample in family.samples
    ]
    assert len(samples) < 5000


# --- helpers refuse unbounded or personal label values ------------------------------------------------------


@pytest.mark.parametrize("value", PERSONAL_DATA)
def test_helpers_refuse_personal_data_as_label_values(value: str) -> None:
    metrics = _fresh()
    with pytest.raises(ValueError):
        agency_label(value)
    with pytest.raises(ValueError):
        procedure_label(value)
    with pytest.raises(ValueError):
        metrics.handoff(Agency.TAX, value)
    with pytest.raises(ValueError):
        metrics.dossier_received(value, Channel.COUNTER)
    with pytest.raises(ValueError):
        metrics.set_on_time_ratio(RatioScope.AGENCY, value, 1.0)


def test_helpers_refuse_values_outside_their_sets() -> None:
    metrics = _fresh()
    with pytest.raises(ValueError):
        metrics.handoff(Agency.TAX, "check_transfer")  # a land action
    with pytest.raises(ValueError):
        metrics.intake_rejected("the citizen's name was wrong")
    with pytest.raises(ValueError):
        metrics.agency(Agency.TAX).dead_lettered("weird")
    with pytest.raises(KeyError):
        metrics.agency(Agency.TAX).sent_to_tier("3h")
    with pytest.raises(ValueError):
        metrics.set_consumer_lag("connector tax", "handoff.tax.requested", 1)
    with pytest.raises(ValueError):
        metrics.set_on_time_ratio(RatioScope.PROCEDURE, "1.011537", 1.5)


def test_no_personal_data_in_the_exposition() -> None:
    metrics = _fresh()
    _touch_everything(metrics)
    text = _exposition(metrics)
    for value in PERSONAL_DATA:
        assert value not in text


# --- bound children ---------------------------------------------------------------------------------


def test_bound_children_are_reused_and_update_the_family() -> None:
    metrics = _fresh()
    first = metrics.handoff(Agency.LAND, "check_transfer")
    assert metrics.handoff("land", "check_transfer") is first
    first.finished(OutcomeKind.REJECTED, 0.3)
    first.finished(OutcomeKind.COMPLETED, 0.2)
    registry = metrics.registry
    labels = {"agency": "land", "action": "check_transfer"}
    assert registry.get_sample_value("lienthong_handoff_duration_seconds_count", labels) == 2
    assert registry.get_sample_value("lienthong_handoff_outcomes_total", {**labels, "kind": "rejected"}) == 1


def test_circuit_transitions() -> None:
    metrics = _fresh()
    tax = metrics.agency(Agency.TAX)
    tax.circuit(CircuitState.OPEN)
    tax.circuit(CircuitState.HALF_OPEN)
    tax.circuit(CircuitState.OPEN)
    tax.circuit(CircuitState.CLOSED)
    registry = metrics.registry

    def state(name: str) -> float | None:
        return registry.get_sample_value(
            "lienthong_circuit_state", {"agency": "tax", "lienthong_circuit_state": name}
        )

    assert (state("closed"), state("half_open"), state("open")) == (1, 0, 0), "one series per state"
    assert registry.get_sample_value("lienthong_circuit_open_total", {"agency": "tax"}) == 2


def test_prime_creates_series_at_zero() -> None:
    metrics = _fresh()
    metrics.prime(agencies=[Agency.TAX], procedures=["1.011537"])
    registry = metrics.registry
    for error_class in DEAD_LETTER_CLASSES:
        labels = {"agency": "tax", "error_class": error_class.value}
        assert registry.get_sample_value("lienthong_dead_letters_total", labels) == 0
    for tier in RETRY_TIER_NAMES:
        assert (
            registry.get_sample_value("lienthong_delayed_retries_total", {"agency": "tax", "tier": tier}) == 0
        )
    labels = {"procedure": "1.011537", "state": "overdue"}
    assert registry.get_sample_value("lienthong_dossiers", labels) == 0

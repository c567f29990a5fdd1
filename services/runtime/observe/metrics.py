"""Every ``lienthong_*`` Prometheus metric, declared once, with bounded labels.

The services import :data:`METRICS` (bound to prometheus-client's default registry, the one that
``/metrics`` serves) and update it; tests build their own with ``build_metrics(CollectorRegistry())``.
:data:`CATALOGUE` lists every metric with its type and labels: the alert rules, the Grafana dashboard
and their tests are checked against it.

Rules every metric here follows (and ``tests/unit/test_metrics.py`` checks):

- names by Prometheus conventions: ``lienthong_`` prefix, base units (``_seconds``, ``_records``,
  ``_ratio``), counters end in ``_total``;
- label values come from closed sets — :class:`~schemas.agencies.Agency` and its actions, procedure
  codes of the catalog, the enums below — so the number of series is bounded; a dossier code, a
  citizen id or a name is never a label value (the helpers refuse values that are not in those sets);
- hot paths bind their label children once (:meth:`Metrics.handoff`, :meth:`Metrics.agency`,
  :meth:`Metrics.service`) and never look labels up per message;
- :meth:`Metrics.prime` creates every known series at zero at start-up, so ``rate()`` and
  ``increase()`` see the first failure of an agency rather than a series that starts at 1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Enum, Gauge, Histogram

from schemas.agencies import AGENCY_ACTIONS, Agency, is_known_action
from schemas.events import EVENT_TYPES, Channel, ClosedResult, OutcomeKind
from schemas.topics import RETRY_TIERS
from services.runtime.failures.circuit import CircuitState
from services.runtime.failures.table import DEAD_LETTER_CLASSES, CallResult, FailureClass

# --- bounded label values ---------------------------------------------------------------------


class Service(StrEnum):
    """The process kinds of the bus (a connector process serves one agency, given by ``agency``)."""

    INTAKE = "intake"
    ROUTER = "router"
    TRACKER = "tracker"
    CONNECTOR = "connector"


TECHNICAL_FAILURES: Final[frozenset[CallResult]] = frozenset({CallResult.TRANSIENT, CallResult.PROTOCOL})


class OpenDossierState(StrEnum):
    """Open dossiers by state (``lienthong_dossiers``); a dossier is in exactly one of them."""

    IN_PROGRESS = "in_progress"  # the clock runs and the due date has not passed
    PAUSED = "paused"  # the clock is paused: waiting on the citizen
    OVERDUE = "overdue"  # past its statutory due date, not closed


class LegState(StrEnum):
    """Open agency legs by state (``lienthong_legs_open``)."""

    REQUESTED = "requested"  # handed off, no outcome yet
    WAITING_ON_CITIZEN = "waiting_on_citizen"  # e.g. tax to pay
    STUCK = "stuck"  # dead-lettered: an operator must act
    OVERDUE = "overdue"  # past the agency's share of the deadline


class RatioScope(StrEnum):
    """What ``lienthong_on_time_ratio``'s ``subject`` label names (an agency or a procedure code)."""

    AGENCY = "agency"
    PROCEDURE = "procedure"


class RejectionKind(StrEnum):
    """Why intake refused a submission (``lienthong_intake_rejections_total``)."""

    TOO_LARGE = "too_large"
    MALFORMED = "malformed"  # not JSON, or not an object
    INVALID_FIELDS = "invalid_fields"  # contract or form validation failed
    UNKNOWN_PROCEDURE = "unknown_procedure"
    MISSING_IDEMPOTENCY_KEY = "missing_idempotency_key"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"  # too long, or not visible ASCII
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # not application/json
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"  # the key was used for a different dossier


NO_AGENCY: Final = "none"
"""``agency`` label value of a dead letter from a topic of no agency (intake, router, tracker)."""

RETRY_TIER_NAMES: Final[tuple[str, ...]] = tuple(tier.name for tier in RETRY_TIERS)

_PROCEDURE_CODE = re.compile(r"^\d\.\d{6}$")
_NAME_LIKE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,127}$")


# --- the catalogue ----------------------------------------------------------------------------


class MetricKind(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"
    STATE_SET = "stateset"  # client_python's Enum: a series per state, labelled by the metric's name


HANDOFF_BUCKETS: Final[tuple[float, ...]] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
)
"""Seconds: a sandbox answers in milliseconds; a slow agency with in-process retries takes up to a minute."""


@dataclass(frozen=True)
class MetricSpec:
    """One metric family as exposed: ``name`` is what PromQL uses (``_total`` included for counters)."""

    name: str
    kind: MetricKind
    labels: tuple[str, ...]
    help: str
    buckets: tuple[float, ...] = ()

    def series_names(self) -> frozenset[str]:
        """Every sample name this family exposes (PromQL may reference any of them)."""
        if self.kind is MetricKind.HISTOGRAM:
            suffixes = ("_bucket", "_sum", "_count", "_created")
            return frozenset(self.name + suffix for suffix in suffixes)
        if self.kind is MetricKind.COUNTER:
            return frozenset({self.name, self.name.removesuffix("_total") + "_created"})
        return frozenset({self.name})


def _spec(
    name: str, kind: MetricKind, labels: tuple[str, ...], help: str, buckets: tuple[float, ...] = ()
) -> MetricSpec:
    return MetricSpec(name=name, kind=kind, labels=labels, help=help, buckets=buckets)


_C, _G, _H = MetricKind.COUNTER, MetricKind.GAUGE, MetricKind.HISTOGRAM

# Handoffs and agency calls (connector host).
HANDOFF_DURATION = _spec(
    "lienthong_handoff_duration_seconds",
    _H,
    ("agency", "action"),
    "Time from a handoff's request to its outcome (the request's time to the outcome's): the agency's "
    "answer, in-process retries and delay-tier waits included.",
    HANDOFF_BUCKETS,
)
HANDOFF_OUTCOMES = _spec(
    "lienthong_handoff_outcomes_total",
    _C,
    ("agency", "action", "kind"),
    "Handoff outcomes published by the connectors, by kind "
    "(completed, rejected, waiting_on_citizen, dead_lettered).",
)
AGENCY_CALLS = _spec(
    "lienthong_agency_calls_total",
    _C,
    ("agency", "result"),
    "Calls to agency systems, each attempt counted, by result (ok, rejected, transient, protocol).",
)
AGENCY_CALL_RETRIES = _spec(
    "lienthong_agency_call_retries_total",
    _C,
    ("agency",),
    "In-process (blip) retries of agency calls, after a first failed attempt.",
)
DELAYED_RETRIES = _spec(
    "lienthong_delayed_retries_total",
    _C,
    ("agency", "tier"),
    "Handoff requests sent to a delayed retry tier (transient failure or open circuit).",
)
DEAD_LETTERS = _spec(
    "lienthong_dead_letters_total",
    _C,
    ("agency", "error_class"),
    "Records written to a dead-letter topic, by agency ('none' for topics of no agency) and error class.",
)
CIRCUIT_STATE = _spec(
    "lienthong_circuit_state",
    MetricKind.STATE_SET,
    ("agency",),
    "Circuit breaker of an agency system: one series per state (closed, half_open, open), the current"
    " one 1 and the others 0; the state is in the label named after the metric.",
)
CIRCUIT_OPENED = _spec(
    "lienthong_circuit_open_total",
    _C,
    ("agency",),
    "Times the circuit breaker of an agency system opened.",
)
# Kafka consumption (every service).
CONSUMER_LAG = _spec(
    "lienthong_consumer_lag_records",
    _G,
    ("group", "topic"),
    "Records not yet consumed, summed over the partitions assigned to this process.",
)
OUTBOX_PENDING = _spec(
    "lienthong_outbox_pending_records",
    _G,
    ("service",),
    "Records written to the outbox and not yet acknowledged by Kafka.",
)
OUTBOX_OLDEST_AGE = _spec(
    "lienthong_outbox_oldest_age_seconds",
    _G,
    ("service",),
    "How long the oldest record in the outbox has waited for Kafka (0 when the outbox is empty).",
)
OUTBOX_PARKED = _spec(
    "lienthong_outbox_parked_total",
    _C,
    ("service",),
    "Outbox records Kafka will never accept (too large), moved aside so the records behind them go on.",
)
LOOP_RESTARTS = _spec(
    "lienthong_background_loop_restarts_total",
    _C,
    ("service", "loop"),
    "Background loops of a service (outbox relay, pollers, delay-tier consumers) that died and were "
    "restarted.",
)
EVENTS_PROCESSED = _spec(
    "lienthong_events_processed_total",
    _C,
    ("service", "event_type"),
    "Events handled by a service (duplicates skipped by deduplication are not counted).",
)
POISON_RECORDS = _spec(
    "lienthong_poison_records_total",
    _C,
    ("service",),
    "Records a service could not read (unparseable, schema-invalid, unknown type or version).",
)
# Dossiers (intake, tracker).
DOSSIERS_RECEIVED = _spec(
    "lienthong_dossiers_received_total",
    _C,
    ("procedure", "channel"),
    "Dossiers accepted by intake, by procedure code and channel.",
)
INTAKE_REJECTIONS = _spec(
    "lienthong_intake_rejections_total",
    _C,
    ("reason_kind",),
    "Submissions refused by intake, by kind of reason.",
)
DOSSIERS = _spec(
    "lienthong_dossiers",
    _G,
    ("procedure", "state"),
    "Open dossiers by procedure code and state (in_progress, paused, overdue).",
)
LEGS_OPEN = _spec(
    "lienthong_legs_open",
    _G,
    ("agency", "state"),
    "Open agency legs by agency and state (requested, waiting_on_citizen, stuck, overdue).",
)
APOLOGY_SLIPS_DUE = _spec(
    "lienthong_apology_slips_due",
    _G,
    ("procedure",),
    "Open dossiers due within one working day: the center owes the citizen an apology slip "
    "(phiếu xin lỗi) and a new appointment.",
)
DOSSIERS_WAITING_TOO_LONG = _spec(
    "lienthong_dossiers_waiting_too_long",
    _G,
    ("procedure",),
    "Open dossiers paused on the citizen (a fee or tax to pay, a supplement) for longer than the "
    "tracker's threshold: their deadline does not run, so nothing else flags them.",
)
DOSSIERS_CLOSED = _spec(
    "lienthong_dossiers_closed_total",
    _C,
    ("procedure", "result", "on_time"),
    "Dossiers closed, by procedure code, result (completed, returned, withdrawn) and on_time (true/false).",
)
ON_TIME_RATIO = _spec(
    "lienthong_on_time_ratio",
    _G,
    ("scope", "subject"),
    "Share of closed dossiers (scope=procedure, subject=procedure code) or legs (scope=agency, "
    "subject=agency) finished by their due date.",
)

CATALOGUE: Final[tuple[MetricSpec, ...]] = (
    HANDOFF_DURATION,
    HANDOFF_OUTCOMES,
    AGENCY_CALLS,
    AGENCY_CALL_RETRIES,
    DELAYED_RETRIES,
    DEAD_LETTERS,
    CIRCUIT_STATE,
    CIRCUIT_OPENED,
    CONSUMER_LAG,
    OUTBOX_PENDING,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PARKED,
    LOOP_RESTARTS,
    EVENTS_PROCESSED,
    POISON_RECORDS,
    DOSSIERS_RECEIVED,
    INTAKE_REJECTIONS,
    DOSSIERS,
    LEGS_OPEN,
    APOLOGY_SLIPS_DUE,
    DOSSIERS_WAITING_TOO_LONG,
    DOSSIERS_CLOSED,
    ON_TIME_RATIO,
)
"""Every ``lienthong_*`` metric family."""

ALL_METRICS: Final[Mapping[str, MetricKind]] = MappingProxyType({spec.name: spec.kind for spec in CATALOGUE})
"""Metric name (as PromQL writes it) → type."""


def exposed_series_names() -> frozenset[str]:
    """Every sample name the catalogue's metrics expose (histogram ``_bucket`` etc. included)."""
    return frozenset().union(*(spec.series_names() for spec in CATALOGUE))


# --- label checks -------------------------------------------------------------------------------


def agency_label(agency: Agency | str) -> str:
    """The label value of an agency; ValueError for anything that is not an :class:`Agency`."""
    return Agency(agency).value


def procedure_label(code: str) -> str:
    """The label value of a procedure code (``1.007073``); ValueError for anything else."""
    if not _PROCEDURE_CODE.match(code):
        raise ValueError(f"not a procedure code: {code!r} (a metric label takes only catalog codes)")
    return code


def _name_label(value: str, what: str) -> str:
    if not _NAME_LIKE.match(value):
        raise ValueError(f"not a valid {what} label value: {value!r}")
    return value


# --- bound children for hot paths ----------------------------------------------------------------


@dataclass(frozen=True)
class HandoffMetrics:
    """The series of one (agency, action), bound once."""

    duration: Histogram
    outcomes: Mapping[OutcomeKind, Counter]

    def finished(self, kind: OutcomeKind, seconds: float) -> None:
        """Record one handoff's outcome and the time it took."""
        self.duration.observe(seconds)
        self.outcomes[kind].inc()


@dataclass(frozen=True)
class AgencyMetrics:
    """The series of one agency system, bound once."""

    calls: Mapping[CallResult, Counter]
    blip_retries: Counter
    delayed_retries: Mapping[str, Counter]  # by tier name
    dead_letters: Mapping[FailureClass, Counter]
    circuit_state: Enum
    circuit_opened: Counter

    def called(self, result: CallResult) -> None:
        self.calls[result].inc()

    def retried_in_process(self) -> None:
        self.blip_retries.inc()

    def sent_to_tier(self, tier: str) -> None:
        self.delayed_retries[tier].inc()

    def dead_lettered(self, error_class: FailureClass | str) -> None:
        self.dead_letters[FailureClass(error_class)].inc()

    def circuit(self, state: CircuitState) -> None:
        """Record a circuit-breaker transition (opening counts in ``lienthong_circuit_open_total``)."""
        self.circuit_state.state(state.name.lower())
        if state is CircuitState.OPEN:
            self.circuit_opened.inc()


@dataclass(frozen=True)
class ServiceMetrics:
    """The series of one service process, bound once."""

    outbox_pending: Gauge
    outbox_oldest_age: Gauge
    outbox_parked: Counter
    poison_records: Counter
    events_processed: Mapping[str, Counter]  # by event type

    def processed(self, event_type: str) -> None:
        self.events_processed[event_type].inc()

    def set_outbox(self, pending: int, oldest_age_s: float) -> None:
        self.outbox_pending.set(pending)
        self.outbox_oldest_age.set(oldest_age_s)

    def parked(self) -> None:
        self.outbox_parked.inc()


@dataclass
class Metrics:
    """Every ``lienthong_*`` metric, registered in one registry."""

    registry: CollectorRegistry
    handoff_duration: Histogram
    handoff_outcomes: Counter
    agency_calls: Counter
    agency_call_retries: Counter
    delayed_retries: Counter
    dead_letters: Counter
    circuit_state: Enum
    circuit_opened: Counter
    consumer_lag: Gauge
    outbox_pending: Gauge
    outbox_oldest_age: Gauge
    outbox_parked: Counter
    loop_restarts: Counter
    events_processed: Counter
    poison_records: Counter
    dossiers_received: Counter
    intake_rejections: Counter
    dossiers: Gauge
    legs_open: Gauge
    apology_slips_due: Gauge
    dossiers_waiting_too_long: Gauge
    dossiers_closed: Counter
    on_time_ratio: Gauge
    _handoffs: dict[tuple[str, str], HandoffMetrics] = field(default_factory=dict, repr=False)
    _agencies: dict[str, AgencyMetrics] = field(default_factory=dict, repr=False)
    _services: dict[str, ServiceMetrics] = field(default_factory=dict, repr=False)

    # hot paths: bind once, keep the result

    def handoff(self, agency: Agency | str, action: str) -> HandoffMetrics:
        """The bound series of one agency action (ValueError if the agency does not serve it)."""
        bound = self._handoffs.get((agency, action))  # an Agency is equal to its value, and hashes so
        if bound is None:
            name = agency_label(agency)
            if not is_known_action(name, action):
                raise ValueError(f"agency {name!r} serves no action {action!r}")
            key = (name, action)
            bound = HandoffMetrics(
                duration=self.handoff_duration.labels(name, action),
                outcomes={
                    kind: self.handoff_outcomes.labels(name, action, kind.value) for kind in OutcomeKind
                },
            )
            self._handoffs[key] = bound
        return bound

    def agency(self, agency: Agency | str) -> AgencyMetrics:
        """The bound series of one agency system."""
        name = agency_label(agency)
        bound = self._agencies.get(name)
        if bound is None:
            bound = AgencyMetrics(
                calls={result: self.agency_calls.labels(name, result.value) for result in CallResult},
                blip_retries=self.agency_call_retries.labels(name),
                delayed_retries={tier: self.delayed_retries.labels(name, tier) for tier in RETRY_TIER_NAMES},
                dead_letters={
                    error: self.dead_letters.labels(name, error.value) for error in DEAD_LETTER_CLASSES
                },
                circuit_state=self.circuit_state.labels(name),
                circuit_opened=self.circuit_opened.labels(name),
            )
            self._agencies[name] = bound
        return bound

    def service(self, service: Service | str) -> ServiceMetrics:
        """The bound series of one service process."""
        name = Service(service).value
        bound = self._services.get(name)
        if bound is None:
            bound = ServiceMetrics(
                outbox_pending=self.outbox_pending.labels(name),
                outbox_oldest_age=self.outbox_oldest_age.labels(name),
                outbox_parked=self.outbox_parked.labels(name),
                poison_records=self.poison_records.labels(name),
                events_processed={
                    event_type: self.events_processed.labels(name, event_type) for event_type in EVENT_TYPES
                },
            )
            self._services[name] = bound
        return bound

    # less frequent updates: checked label values

    def dead_lettered_without_agency(self, error_class: FailureClass | str) -> None:
        """A dead letter from a topic of no agency (a core service's own input)."""
        self.dead_letters.labels(NO_AGENCY, FailureClass(error_class).value).inc()

    def loop_restarted(self, service: Service | str, loop: str) -> None:
        """A background loop of ``service`` died and is being restarted."""
        self.loop_restarts.labels(Service(service).value, _name_label(loop, "loop")).inc()

    def prime_loops(self, service: Service | str, loops: Iterable[str]) -> None:
        for loop in loops:
            self.loop_restarts.labels(Service(service).value, _name_label(loop, "loop"))

    def set_consumer_lag(self, group: str, topic: str, records: int) -> None:
        """Set the lag of a consumer group on a topic (summed over this process's partitions)."""
        self.consumer_lag.labels(_name_label(group, "group"), _name_label(topic, "topic")).set(records)

    def dossier_received(self, procedure: str, channel: Channel | str) -> None:
        self.dossiers_received.labels(procedure_label(procedure), Channel(channel).value).inc()

    def intake_rejected(self, kind: RejectionKind | str) -> None:
        self.intake_rejections.labels(RejectionKind(kind).value).inc()

    def dossier_closed(self, procedure: str, result: ClosedResult | str, on_time: bool) -> None:
        self.dossiers_closed.labels(
            procedure_label(procedure), ClosedResult(result).value, "true" if on_time else "false"
        ).inc()

    def set_dossiers(self, procedure: str, state: OpenDossierState | str, count: int) -> None:
        self.dossiers.labels(procedure_label(procedure), OpenDossierState(state).value).set(count)

    def set_legs_open(self, agency: Agency | str, state: LegState | str, count: int) -> None:
        self.legs_open.labels(agency_label(agency), LegState(state).value).set(count)

    def set_apology_slips_due(self, procedure: str, count: int) -> None:
        self.apology_slips_due.labels(procedure_label(procedure)).set(count)

    def set_waiting_too_long(self, procedure: str, count: int) -> None:
        self.dossiers_waiting_too_long.labels(procedure_label(procedure)).set(count)

    def set_on_time_ratio(self, scope: RatioScope | str, subject: str, ratio: float) -> None:
        scope = RatioScope(scope)
        label = agency_label(subject) if scope is RatioScope.AGENCY else procedure_label(subject)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"a ratio is between 0 and 1, not {ratio}")
        self.on_time_ratio.labels(scope.value, label).set(ratio)

    # start-up

    def prime(
        self,
        *,
        service: Service | str | None = None,
        agencies: Iterable[Agency | str] = (),
        procedures: Iterable[str] = (),
    ) -> None:
        """Create the known series at zero, so dashboards and ``increase()`` see the first event.

        A connector primes its agency; the tracker primes every agency and the catalog's procedures;
        intake primes the catalog's procedures.
        """
        if service is not None:
            self.service(service)
        if service == Service.INTAKE:
            for kind in RejectionKind:
                self.intake_rejections.labels(kind.value)
        for agency in agencies:
            name = agency_label(agency)
            self.agency(name)
            for action in sorted(AGENCY_ACTIONS[Agency(name)]):
                self.handoff(name, action)
            for leg_state in LegState:
                self.legs_open.labels(name, leg_state.value)
        for code in procedures:
            procedure_label(code)
            for channel in Channel:
                self.dossiers_received.labels(code, channel.value)
            for result in ClosedResult:
                for on_time in ("true", "false"):
                    self.dossiers_closed.labels(code, result.value, on_time)
            for dossier_state in OpenDossierState:
                self.dossiers.labels(code, dossier_state.value)
            self.apology_slips_due.labels(code)
            self.dossiers_waiting_too_long.labels(code)


def _counter(spec: MetricSpec, registry: CollectorRegistry) -> Counter:
    assert spec.kind is MetricKind.COUNTER
    return Counter(spec.name, spec.help, spec.labels, registry=registry)


def _gauge(spec: MetricSpec, registry: CollectorRegistry) -> Gauge:
    assert spec.kind is MetricKind.GAUGE
    return Gauge(spec.name, spec.help, spec.labels, registry=registry)


def _state_set(spec: MetricSpec, registry: CollectorRegistry, states: list[str]) -> Enum:
    assert spec.kind is MetricKind.STATE_SET
    return Enum(spec.name, spec.help, spec.labels, registry=registry, states=states)


def _histogram(spec: MetricSpec, registry: CollectorRegistry) -> Histogram:
    assert spec.kind is MetricKind.HISTOGRAM
    return Histogram(spec.name, spec.help, spec.labels, registry=registry, buckets=spec.buckets)


def build_metrics(registry: CollectorRegistry) -> Metrics:
    """Register every catalogue metric in ``registry`` (once per registry: a second call raises)."""
    return Metrics(
        registry=registry,
        handoff_duration=_histogram(HANDOFF_DURATION, registry),
        handoff_outcomes=_counter(HANDOFF_OUTCOMES, registry),
        agency_calls=_counter(AGENCY_CALLS, registry),
        agency_call_retries=_counter(AGENCY_CALL_RETRIES, registry),
        delayed_retries=_counter(DELAYED_RETRIES, registry),
        dead_letters=_counter(DEAD_LETTERS, registry),
        circuit_state=_state_set(CIRCUIT_STATE, registry, [s.name.lower() for s in CircuitState]),
        circuit_opened=_counter(CIRCUIT_OPENED, registry),
        consumer_lag=_gauge(CONSUMER_LAG, registry),
        outbox_pending=_gauge(OUTBOX_PENDING, registry),
        outbox_oldest_age=_gauge(OUTBOX_OLDEST_AGE, registry),
        outbox_parked=_counter(OUTBOX_PARKED, registry),
        loop_restarts=_counter(LOOP_RESTARTS, registry),
        events_processed=_counter(EVENTS_PROCESSED, registry),
        poison_records=_counter(POISON_RECORDS, registry),
        dossiers_received=_counter(DOSSIERS_RECEIVED, registry),
        intake_rejections=_counter(INTAKE_REJECTIONS, registry),
        dossiers=_gauge(DOSSIERS, registry),
        legs_open=_gauge(LEGS_OPEN, registry),
        apology_slips_due=_gauge(APOLOGY_SLIPS_DUE, registry),
        dossiers_waiting_too_long=_gauge(DOSSIERS_WAITING_TOO_LONG, registry),
        dossiers_closed=_counter(DOSSIERS_CLOSED, registry),
        on_time_ratio=_gauge(ON_TIME_RATIO, registry),
    )


METRICS: Final[Metrics] = build_metrics(REGISTRY)
"""The process's metrics, in the default registry that ``/metrics`` serves."""


def handoff_metrics(agency: Agency | str, action: str) -> HandoffMetrics:
    """Bound series of one agency action in :data:`METRICS`."""
    return METRICS.handoff(agency, action)


def agency_metrics(agency: Agency | str) -> AgencyMetrics:
    """Bound series of one agency system in :data:`METRICS`."""
    return METRICS.agency(agency)


def service_metrics(service: Service | str) -> ServiceMetrics:
    """Bound series of one service process in :data:`METRICS`."""
    return METRICS.service(service)

"""The main job's per-agency summary line, read from a connector's /metrics exposition."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest

from services.tools.stack.run import FAULTS, AgencyCounters, agencies_line, agency_counters


def exposition() -> str:
    registry = CollectorRegistry()
    calls = Counter("lienthong_agency_calls", "", ["agency", "result"], registry=registry)
    retries = Counter("lienthong_agency_call_retries", "", ["agency"], registry=registry)
    delayed = Counter("lienthong_delayed_retries", "", ["agency", "tier"], registry=registry)
    dead = Counter("lienthong_dead_letters", "", ["agency", "error_class"], registry=registry)
    calls.labels("tax", "ok").inc(10)
    calls.labels("tax", "transient").inc(4)
    retries.labels("tax").inc(3)
    delayed.labels("tax", "10s").inc(2)
    dead.labels("tax", "transient").inc(1)
    calls.labels("land", "ok").inc(0)
    return generate_latest(registry).decode()


def test_counters_per_agency_from_the_metrics_exposition() -> None:
    counters = agency_counters(exposition())
    tax = counters["tax"]
    assert (tax.calls, tax.failed_calls, tax.retries, tax.delayed, tax.dead_letters) == (14, 4, 3, 2, 1)


def test_the_line_shows_rates_retries_and_dead_letters_of_agencies_with_calls() -> None:
    now = agency_counters(exposition())
    line = agencies_line(now, {"tax": AgencyCounters(calls=4)}, interval_s=2.0)
    assert "tax 5.0 calls/s, 4 failed, retries 3+2 delayed, 1 dead" in line
    assert "land" not in line
    assert agencies_line({}, {}, 2.0).endswith("no calls yet")


def test_the_scheduled_faults_include_an_outage_and_a_failure_share() -> None:
    assert any("down_for_s" in f.update for f in FAULTS)
    assert any("failure_rate" in f.update for f in FAULTS)

"""The Prometheus configuration and alert rules: promtool accepts them, and every alert is unit-tested
both firing and quiet, and tells the operator what to do."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_metrics_promql import (
    PROMETHEUS_DIR,
    RULE_TESTS_DIR,
    RULES_FILE,
    run_promtool,
)

SEVERITIES = frozenset({"page", "warning", "ticket"})
REQUIRED_ANNOTATIONS = ("summary", "description", "runbook")


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _load(RULES_FILE)["groups"] for rule in group["rules"]]


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def _test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.yml"))


def _alert_cases() -> list[tuple[str, bool]]:
    """(alert name, expects it to fire) for every alert_rule_test case of every test file."""
    cases: list[tuple[str, bool]] = []
    for path in _test_files():
        for test in _load(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.append((case["alertname"], bool(case.get("exp_alerts"))))
    return cases


def test_promtool_checks_the_rules() -> None:
    output = run_promtool("check", "rules", str(RULES_FILE))
    assert "SUCCESS" in output


def test_promtool_checks_the_scrape_config() -> None:
    output = run_promtool("check", "config", "prometheus.yml", cwd=PROMETHEUS_DIR)
    assert "is valid prometheus config file syntax" in output


def test_promtool_rule_unit_tests_pass() -> None:
    files = _test_files()
    assert files, f"no promtool unit tests in {RULE_TESTS_DIR}"
    output = run_promtool("test", "rules", *(str(path) for path in files))
    assert "FAILED" not in output


def test_the_unit_tests_load_the_rules_file() -> None:
    for path in _test_files():
        rule_files = [(path.parent / name).resolve() for name in _load(path)["rule_files"]]
        assert rule_files == [RULES_FILE.resolve()], path.name


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = _alert_cases()
    missing = []
    for alert in _alerts():
        if (alert, True) not in cases:
            missing.append(f"{alert}: no case where it fires")
        if (alert, False) not in cases:
            missing.append(f"{alert}: no case where it stays quiet")
    assert not missing, "\n".join(missing)


def test_unit_tests_name_only_existing_alerts() -> None:
    unknown = {alert for alert, _ in _alert_cases()} - set(_alerts())
    assert not unknown


def test_the_alerts_the_issue_asks_for_exist() -> None:
    assert {
        "AgencyErrorRateHigh",
        "CircuitOpen",
        "DeadLettersGrowing",
        "ConsumerLagGrowing",
        "DossiersAboutToGoOverdue",
        "DossierOverdue",
        "ServiceDown",
        "OutboxBacklog",
    } <= set(_alerts())


@pytest.mark.parametrize("alert", sorted(_alerts()))
def test_alert_has_severity_and_a_runbook(alert: str) -> None:
    rule = _alerts()[alert]
    assert rule.get("labels", {}).get("severity") in SEVERITIES
    annotations = rule.get("annotations", {})
    for key in REQUIRED_ANNOTATIONS:
        assert str(annotations.get(key, "")).strip(), f"{alert} lacks a {key} annotation"
    runbook = annotations["runbook"]
    # real steps, not a placeholder: several lines, and something to run or open
    assert len(runbook.strip().splitlines()) >= 3, f"{alert}: the runbook is too short to act on"
    assert re.search(r"`(lienthong|curl|kubectl|kafka-)[^`]*`|supervision page", runbook), (
        f"{alert}: the runbook names no command to run and no page to open"
    )


# Recorded under the names kafka_exporter uses, so that dashboards written for it work on the bus.
KAFKA_EXPORTER_NAMES = {"kafka_consumergroup_lag", "kafka_consumergroup_lag_sum"}


def test_rule_names_follow_conventions() -> None:
    for rule in _rules():
        if rule.get("record") in KAFKA_EXPORTER_NAMES:
            assert "lienthong_consumer_lag_records" in rule["expr"]
        elif "record" in rule:
            # level:metric:operations
            assert re.fullmatch(r"[a-z_]+:lienthong_[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]
        else:
            assert re.fullmatch(r"[A-Z][A-Za-z]+", rule["alert"]), rule["alert"]

"""The Grafana dashboard and the rules query only metrics the services expose
(services/runtime/observe/metrics.py), and the dashboard is laid out
as operators expect: one row per concern."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.runtime.observe.metrics import CATALOGUE, exposed_series_names
from tests.unit.test_metrics_promql import (
    DASHBOARD_FILE,
    ROOT,
    RULES_FILE,
    grafana_query,
    metric_names,
    run_promtool,
)

GRAFANA_DIR = ROOT / "deploy" / "grafana"
ROWS = ["Flow", "Agencies", "Retries and dead letters", "Deadlines"]
PROMETHEUS_OWN = frozenset({"up"})  # set by Prometheus for every scrape target


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return loaded


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels inside


def _dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    dashboard = _dashboard()
    queries = [
        (f"panel {panel['title']!r}", target["expr"])
        for panel in _panels(dashboard)
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            queries.append(
                (f"variable {variable['name']!r}", query["query"] if isinstance(query, dict) else query)
            )
    return queries


def _rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def _recorded_names() -> set[str]:
    return {rule["record"] for rule in _rules() if "record" in rule}


def _known_names() -> frozenset[str]:
    return exposed_series_names() | PROMETHEUS_OWN | _recorded_names()


def test_dashboard_metadata() -> None:
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 38
    assert dashboard["uid"] == "lienthong-overview"
    assert dashboard["title"]
    assert dashboard.get("id") is None  # provisioned dashboards get their id from Grafana


def test_one_row_per_concern_in_order() -> None:
    rows = [panel["title"] for panel in _dashboard()["panels"] if panel["type"] == "row"]
    assert rows == ROWS


def test_every_row_has_panels() -> None:
    counts: dict[str, int] = {}
    current = None
    for panel in _dashboard()["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
            counts[current] = len(panel.get("panels", []))
        else:
            assert current is not None, f"panel {panel['title']!r} is above the first row"
            counts[current] += 1
    assert all(counts[row] >= 3 for row in ROWS), counts


def test_panels_are_well_formed() -> None:
    ids = []
    for panel in _panels(_dashboard()):
        ids.append(panel["id"])
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel.get("description"), f"panel {panel['title']!r} has no description"
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


@pytest.mark.parametrize(("where", "expr"), _dashboard_queries())
def test_dashboard_queries_use_only_exposed_metrics(where: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{where}: no metric found in {expr!r}"
    unknown = names - _known_names()
    assert not unknown, f"{where}: {sorted(unknown)} is not declared in services/runtime/observe/metrics.py"


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule.get("alert") or rule.get("record"))
def test_rules_use_only_exposed_metrics(rule: dict[str, Any]) -> None:
    names = metric_names(rule["expr"])
    assert names
    unknown = names - _known_names()
    assert not unknown, f"{sorted(unknown)} is not declared in services/runtime/observe/metrics.py"


def test_every_metric_is_on_the_dashboard() -> None:
    """A metric no panel shows is a metric nobody looks at."""
    used: set[str] = set()
    for _, expr in _dashboard_queries():
        used |= metric_names(expr)
    recorded = {rule["record"]: metric_names(rule["expr"]) for rule in _rules() if "record" in rule}
    for name in list(used):
        used |= recorded.get(name, set())
    missing = [spec.name for spec in CATALOGUE if not spec.series_names() & used]
    assert not missing, f"not on the dashboard: {missing}"


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every dashboard query (as a recording rule, Grafana variables filled in)."""
    rules = [
        {"record": f"dashboard:query_{index}:check", "expr": grafana_query(expr)}
        for index, (_, expr) in enumerate(_dashboard_queries())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    run_promtool("check", "rules", str(path))


def test_provisioning_points_at_the_dashboard_and_the_datasource() -> None:
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )
    (datasource,) = datasources["datasources"]
    assert datasource["type"] == "prometheus"
    variable = next(v for v in _dashboard()["templating"]["list"] if v["type"] == "datasource")
    assert variable["query"] == "prometheus"
    assert variable["current"]["value"] == datasource["uid"]

    providers = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "lienthong.yml").read_text(encoding="utf-8")
    )
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"]
    assert DASHBOARD_FILE.parent == GRAFANA_DIR / "dashboards"

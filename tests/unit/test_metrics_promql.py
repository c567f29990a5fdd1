"""Helpers the observability tests share (finding promtool, the metric names a PromQL expression uses),
and the tests of those helpers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES_FILE = PROMETHEUS_DIR / "rules" / "lienthong.rules.yml"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"
DASHBOARD_FILE = ROOT / "deploy" / "grafana" / "dashboards" / "lienthong.json"

_DEBIAN_PROMTOOL = Path("/usr/bin/promtool")


def promtool() -> str:
    """Path of promtool: on PATH, else Debian's. Missing: the test fails in CI and is skipped elsewhere."""
    found = shutil.which("promtool")
    if found:
        return found
    if _DEBIAN_PROMTOOL.is_file() and os.access(_DEBIAN_PROMTOOL, os.X_OK):
        return str(_DEBIAN_PROMTOOL)
    message = (
        "promtool is not installed: it comes with Debian's prometheus package "
        "(apt-get install prometheus); .ci/run installs it"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def run_promtool(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> str:
    """Run promtool; fail the test with its output unless it exits 0. Returns stdout and stderr."""
    completed = subprocess.run(
        [promtool(), *args], input=stdin, capture_output=True, cwd=cwd, timeout=120, check=False
    )
    output = (completed.stdout + completed.stderr).decode(errors="replace")
    if completed.returncode != 0:
        pytest.fail(f"promtool {' '.join(args)} exited {completed.returncode}:\n{output}")
    return output


# --- metric names in PromQL ------------------------------------------------------------------------

_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "inf",
        "nan",
        "atan2",
    }
)
_GRAFANA_VARIABLE = re.compile(r"\$\{?__\w+\}?|\$\{\w+(?::\w+)?\}|\$\w+|\[\[\w+\]\]")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_NUMBER = re.compile(r"(?<![\w:.])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
_IDENTIFIER = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_LABEL_VALUES = re.compile(r"^\s*label_values\s*\(\s*(.*?)\s*,\s*\w+\s*\)\s*$", re.S)
_METRIC_IN_MATCHERS = re.compile(r'__name__\s*=\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"')


def grafana_query(expr: str) -> str:
    """A Grafana query as PromQL: variables replaced, ``label_values(m, l)`` reduced to ``m``."""
    variables = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
    text = expr
    for name, value in variables.items():
        text = text.replace(name, value)
    text = _GRAFANA_VARIABLE.sub(".*", text)
    match = _LABEL_VALUES.match(text)
    if match:
        text = match.group(1)
    return text


def metric_names(expr: str) -> set[str]:
    """The metric (and recording-rule) names a PromQL expression selects."""
    text = grafana_query(expr)
    names = set(_METRIC_IN_MATCHERS.findall(text))
    text = _STRING.sub('""', text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    for name, call in _IDENTIFIER.findall(text):
        if call or name.lower() in _KEYWORDS:
            continue  # a function or aggregation, or an operator keyword
        names.add(name)
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up == 0", {"up"}),
        ('up{job=~"lienthong-.*"} == 0', {"up"}),
        (
            'histogram_quantile(0.99, sum by (agency, le) (rate(x_seconds_bucket{agency=~"$agency"}'
            "[$__rate_interval])))",
            {"x_seconds_bucket"},
        ),
        (
            "sum(rate(a_total[5m])) by (agency) / on (agency) group_left(kind) b:c:rate5m",
            {"a_total", "b:c:rate5m"},
        ),
        ("a > 1e3 and delta(b[10m] offset 1h) > 0 or vector(0)", {"a", "b"}),
        ('count_values("value", g) unless absent(h{state="by (x)"})', {"g", "h"}),
        ('{__name__="named_metric", job="x"}', {"named_metric"}),
        ("label_values(lienthong_dossiers, procedure)", {"lienthong_dossiers"}),
        ("max_over_time(g[1h:5m]) - min_over_time(g[1h:5m])", {"g"}),
        ("sum(a) * 60 + scalar(b) - .5", {"a", "b"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names

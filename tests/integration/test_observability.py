"""What operations see, from a real run: the whole stack on a real broker with sample traffic, scraped by
a real Prometheus (Debian's ``prometheus`` binary) with our rule files; ``promtool check metrics`` on
every ``/metrics``; and every log line of every process free of the sample citizens' personal data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from schemas.agencies import Agency
from services.tools.localkafka.process import free_port
from services.tools.stack.stack import DEFAULT_AGENCIES, HOST, LocalStack, StackPorts
from services.tools.stack.traffic import Submitted, Traffic
from tests.stack_helpers import wait_until_closed

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "deploy" / "prometheus" / "rules"
PERSONAL_KEYS = ("citizen_id", "full_name", "address", "residence_address", "child_full_name")


def _binary(name: str) -> str:
    """The path of a Prometheus binary: CI installs it (.ci/run), so there its absence is a failure."""
    found = shutil.which(name)
    if found is None:
        message = f"`{name}` not found: install Debian's prometheus package (apt-get install -y prometheus)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    return found


@dataclass
class Run:
    stack: LocalStack
    submitted: list[Submitted]
    targets: dict[str, int]  # job → port (connectors: one job each, labelled by agency)


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    work_dir = tmp_path_factory.mktemp("observed")
    prefix = f"obs{int(time.time() * 1000) % 10**8}."
    ports = StackPorts.free(DEFAULT_AGENCIES)
    with LocalStack(kafka_bootstrap, work_dir, topic_prefix=prefix, ports=ports, sign_in=False) as stack:
        import asyncio

        async def traffic() -> list[Submitted]:
            sample = Traffic(
                stack.intake_url,
                stack.tracker_url,
                stack.sandbox_url(Agency.LAND),
                stack.sandbox_url(Agency.TAX),
                seed=23,
            )
            try:
                dossiers = [
                    await sample.land_transfer(),
                    await sample.marriage(),
                    await sample.land_transfer(wrong_owner=True),
                    await sample.first_certificate(),
                ]
                await wait_until_closed(sample, stack.tracker_url, dossiers, 120)
                return dossiers
            finally:
                await sample.aclose()

        submitted = asyncio.run(traffic())
        targets = {"intake": ports.intake, "router": ports.router, "tracker": ports.tracker}
        targets |= {f"connector-{a.value}": p for a, p in ports.connectors.items()}
        yield Run(stack, submitted, targets)


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5.0)
        answer.raise_for_status()
        body = answer.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait(self, expr: str, what: str, within_s: float = 60.0) -> list[dict[str, Any]]:
        """Polls ``expr`` until it returns series (the first scrapes and rule evaluations take seconds)."""
        deadline = time.monotonic() + within_s
        while True:
            result = self.query(expr)
            if result or time.monotonic() > deadline:
                assert result, f"{what}: `{expr}` returned nothing within {within_s} s"
                return result
            time.sleep(0.5)


def scrape_config(run: Run, rules: list[Path]) -> dict[str, Any]:
    jobs = []
    for service, port in run.targets.items():
        job, labels = f"lienthong-{service}", {}
        if service.startswith("connector-"):
            job, labels = "lienthong-connector", {"connector": service.removeprefix("connector-")}
        jobs.append((job, {"targets": [f"{HOST}:{port}"], "labels": labels}))
    by_job: dict[str, list[dict[str, Any]]] = {}
    for job, static in jobs:
        by_job.setdefault(job, []).append(static)
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "rule_files": [str(r) for r in rules],
        "scrape_configs": [{"job_name": job, "static_configs": statics} for job, statics in by_job.items()],
    }


@pytest.fixture(scope="module")
def prometheus(run: Run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = _binary("prometheus")
    home = tmp_path_factory.mktemp("prometheus")
    rules = []
    for rule_file in sorted(RULES_DIR.glob("*.yml")):
        copied = home / rule_file.name
        shutil.copy(rule_file, copied)
        rules.append(copied)
    config = home / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(run, rules)), encoding="utf-8")
    port = free_port()
    log_path = home / "prometheus.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address={HOST}:{port}",
                "--web.enable-lifecycle",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited: {log_path.read_text(errors='replace')[-3000:]}")
            try:
                if httpx.get(f"{url}/-/ready", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("prometheus was not ready within 60 s")
            time.sleep(0.3)
        yield Prometheus(url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    assert process.poll() is not None, "no prometheus process is left behind"


def test_every_target_is_up_and_the_rules_load(run: Run, prometheus: Prometheus) -> None:
    expected = len(run.targets)
    prometheus.wait(f'count(up{{job=~"lienthong-.*"}} == 1) == {expected}', "every target up", 60)
    down = prometheus.query('up{job=~"lienthong-.*"} == 0')
    assert down == [], down
    groups = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=5.0).json()["data"]["groups"]
    assert groups and all(rule.get("health") != "err" for g in groups for rule in g["rules"]), groups


def test_flow_agency_latency_retries_dead_letters_lag_and_deadlines_are_scraped(
    run: Run, prometheus: Prometheus
) -> None:
    prometheus.wait('up{job="lienthong-tracker"} == 1', "the tracker is scraped")
    # flow
    received = prometheus.wait("sum(lienthong_dossiers_received_total) > 0", "dossiers received")
    assert float(received[0]["value"][1]) >= len(run.submitted)
    closed = prometheus.wait("sum(lienthong_dossiers_closed_total) > 0", "dossiers closed")
    assert float(closed[0]["value"][1]) == len(run.submitted)
    returned = prometheus.value('sum(lienthong_dossiers_closed_total{result="returned"})')
    assert returned == 1.0, "the wrong-owner transfer was returned to the citizen"
    # agency latency: a histogram observation per handoff, for every agency that had work
    latency = prometheus.wait(
        "sum by (agency) (lienthong_handoff_duration_seconds_count) > 0", "handoff latency per agency"
    )
    assert {s["metric"]["agency"] for s in latency} >= {"land", "tax", "civil_status"}
    assert (prometheus.value('sum(lienthong_handoff_outcomes_total{kind="completed"})') or 0) > 0
    # retries and dead letters: the series exist from start-up (primed at zero)
    for name in ("lienthong_agency_call_retries_total", "lienthong_delayed_retries_total"):
        series = prometheus.query(f'{name}{{job="lienthong-connector"}}')
        assert {s["metric"]["agency"] for s in series} >= {"land", "tax", "civil_status"}, name
    dead_letters = prometheus.query('lienthong_dead_letters_total{job="lienthong-connector"}')
    assert {s["metric"]["error_class"] for s in dead_letters} >= {"poison", "transient", "protocol"}
    assert prometheus.query("lienthong_circuit_state"), "circuit-breaker state per agency"
    # consumer lag, per group and topic, from every consuming service
    lag = prometheus.wait("lienthong_consumer_lag_records", "consumer lag")
    groups = {s["metric"]["group"] for s in lag}
    prefix = run.stack.topic_prefix
    assert {f"{prefix}router", f"{prefix}tracker", f"{prefix}connector-land"} <= groups, groups
    assert all(float(s["value"][1]) >= 0 for s in lag)
    # deadlines: in progress / paused / overdue per procedure, legs, apology slips, on-time ratio
    states = {s["metric"]["state"] for s in prometheus.query('lienthong_dossiers{job="lienthong-tracker"}')}
    assert states == {"in_progress", "paused", "overdue"}
    assert prometheus.value('sum(lienthong_dossiers{job="lienthong-tracker",state="overdue"})') == 0.0
    assert prometheus.query('lienthong_legs_open{state="stuck"}')
    assert prometheus.query("lienthong_apology_slips_due")
    ratio = prometheus.wait(
        'lienthong_on_time_ratio{scope="procedure",subject="9.900005"}', "on-time ratio of marriages"
    )
    assert float(ratio[0]["value"][1]) == 1.0
    # FastStream's own message metrics
    assert prometheus.query("sum by (job) (faststream_received_messages_total)")


def test_promtool_accepts_every_metrics_page(run: Run) -> None:
    promtool = _binary("promtool")
    for service, port in run.targets.items():
        page = httpx.get(f"http://{HOST}:{port}/metrics", timeout=5.0)
        assert page.status_code == 200, service
        checked = subprocess.run(
            [promtool, "check", "metrics"], input=page.content, capture_output=True, timeout=30
        )
        assert checked.returncode == 0, (
            f"{service}: {checked.stdout.decode(errors='replace')} {checked.stderr.decode(errors='replace')}"
        )


def test_every_service_is_ready_and_serves_its_asyncapi_document(run: Run) -> None:
    for service, port in run.targets.items():
        ready = httpx.get(f"http://{HOST}:{port}/ready", timeout=5.0)
        assert ready.status_code == 200, (service, ready.text)
        document = httpx.get(f"http://{HOST}:{port}/asyncapi.json", timeout=5.0).json()
        assert document["channels"], service


def _personal_values(value: Any, key: str | None = None) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _personal_values(v, str(k))
    elif isinstance(value, list):
        for item in value:
            yield from _personal_values(item, key)
    elif key in PERSONAL_KEYS and isinstance(value, str) and len(value) >= 5:
        yield value


def test_no_log_line_of_any_process_carries_a_citizens_id_name_or_address(run: Run) -> None:
    secrets = {v for s in run.submitted for v in _personal_values(s.form)}
    assert any(len(v) == 12 and v.isdigit() for v in secrets), "the sample ids were collected"
    logs = sorted(run.stack.log_dir.glob("*.log"))
    assert {p.stem for p in logs} >= set(run.targets), logs
    for path in logs:
        text = path.read_text(encoding="utf-8", errors="replace")
        leaked = sorted(s for s in secrets if s in text)
        assert not leaked, f"{path.name} contains personal data: {leaked}"
        if path.stem in run.targets:  # our services write JSON lines (a file is not a terminal)
            for number, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    entry = json.loads(line)
                    assert {"ts", "level", "service", "logger", "message"} <= entry.keys(), (
                        f"{path.name}:{number}"
                    )

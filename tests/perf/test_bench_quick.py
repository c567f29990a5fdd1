"""The benchmark harness works: ``lienthong bench --quick`` runs every part and writes valid JSON.

Not a timed test: nothing here asserts a performance figure beyond "it is a positive number"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.tools.cli.main import app

pytestmark = pytest.mark.kafka

SECTIONS = (
    "meta",
    "raw",
    "hop",
    "pipeline",
    "isolation_baseline",
    "isolation",
    "replay",
    "peak_rss_mb",
    "ratios",
    "raw_hop_rounds",
)


def test_quick_bench_writes_every_section(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    out = tmp_path / "bench.json"
    answer = CliRunner().invoke(
        app, ["bench", "--quick", "--messages", "300", "--rounds", "2", "--json", str(out)]
    )
    assert answer.exit_code == 0, answer.output
    assert "hop_over_raw" in answer.output
    result = json.loads(out.read_text())
    assert all(section in result for section in SECTIONS)
    for loop in ("raw", "hop", "replay"):
        assert result[loop]["rate_per_s"] > 0 and result[loop]["wall_s"] > 0, loop
    phases = ("isolation_baseline", "isolation")
    for phase in (result["pipeline"]["max"], result["pipeline"]["half_load"], *(result[p] for p in phases)):
        assert phase["rate_per_s"] > 0 and phase["dossiers"] > 0
        assert 0 < phase["p50_ms"] <= phase["p99_ms"] <= phase["p99_9_ms"]
        assert phase["cpu_s_per_1k_dossiers"] > 0
    assert result["peak_rss_mb"] and all(v > 0 for v in result["peak_rss_mb"].values())
    assert all(v > 0 for v in result["ratios"].values())
    rounds = result["raw_hop_rounds"]
    assert len(rounds) == 2 and result["ratios"]["hop_over_raw"] in {r["hop_over_raw"] for r in rounds}

"""Runs every part of the benchmark in one process, on one broker, and reports them side by side."""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.topics import all_topics
from services.runtime.shell.settings import KafkaSettings
from services.runtime.shell.topics_admin import ensure_topics
from services.tools.bench.hop import run_hop
from services.tools.bench.messages import prefill
from services.tools.bench.pipeline import PhaseResult, PipelineBench
from services.tools.bench.procstats import Stopwatch, freeze_survivors, peak_rss_mb
from services.tools.bench.raw import run_raw
from services.tools.bench.replay import run_replay
from services.tools.bench.replicas import CONFIGURATIONS, ReplicaResult, StallResult, run_replicas
from services.tools.localkafka.choice import kafka_endpoint

RSS_LIMIT_MB = 150.0


@dataclass(frozen=True)
class BenchPlan:
    messages: int = 5000  # raw and hop, each, per round
    rounds: int = 3  # raw then hop, back to back; the round with the median hop ÷ raw is reported
    dossiers: int = 300  # pipeline and isolation maximum-rate runs
    # Before anything is measured: a co-located broker compiles its hot paths over its first minute or
    # so of load, taking up to half a core for it (docs/performance.md)
    warmup_dossiers: int = 1000
    fixed_rate_s: float = 20.0  # the half-load latency run
    dead_letters: int = 2000
    # Database and replicas: rounds of SQLite×1, PostgreSQL×1 and PostgreSQL×2 (``dossiers`` births
    # each), every configuration on its own fresh stack, warmed up with this many births untimed
    replica_rounds: int = 3
    replica_warmup_dossiers: int = 100

    @classmethod
    def quick(cls, messages: int | None = None) -> BenchPlan:
        return cls(
            messages=messages or 1000,
            rounds=1,
            dossiers=30,
            warmup_dossiers=10,
            fixed_rate_s=4.0,
            dead_letters=200,
            replica_rounds=1,
            replica_warmup_dossiers=5,
        )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (0 when there is nothing)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 50), 1),
        "p99_ms": round(percentile(values, 99), 1),
        "p99_9_ms": round(percentile(values, 99.9), 1),
        "max_ms": round(max(values, default=0.0), 1),
    }


def loop_section(watch: Stopwatch, count: int, **extra: Any) -> dict[str, Any]:
    return {
        "messages": count,
        "wall_s": round(watch.wall_s, 3),
        "rate_per_s": round(count / watch.wall_s, 1) if watch.wall_s else 0.0,
        "cpu_s_per_1k": round(watch.cpu_s / count * 1000, 3) if count else 0.0,
        **extra,
    }


def phase_section(result: PhaseResult, **extra: Any) -> dict[str, Any]:
    return {
        "dossiers": result.dossiers,
        "wall_s": round(result.wall_s, 3),
        "rate_per_s": round(result.rate, 2),
        "cpu_s_per_1k_dossiers": round(result.cpu_per_1k, 2),
        "cpu_s_by_process": {k: round(v, 2) for k, v in sorted(result.cpu_s.items())},
        **latency_summary(result.latencies_ms),
        **extra,
    }


def _prefix(kind: str) -> str:
    return f"bench{int(time.time() * 1000) % 10**9}{kind}."


async def _loop_topics(bootstrap: str, prefix: str, count: int) -> int:
    specs = [t for t in all_topics(prefix) if "handoff.land" in t.name or "handoff.outcome" in t.name]
    await ensure_topics(bootstrap, specs)
    return await prefill(bootstrap, prefix + "handoff.land.requested", count)


async def bench_raw(bootstrap: str, count: int) -> dict[str, Any]:
    prefix = _prefix("raw")
    size = await _loop_topics(bootstrap, prefix, count)
    freeze_survivors()
    watch = await run_raw(
        bootstrap,
        prefix + "handoff.land.requested",
        prefix + "handoff.outcome",
        count,
        group_id=prefix + "raw",
        linger_ms=KafkaSettings().linger_ms,  # the same producer settings as the services'
    )
    return loop_section(watch, count, message_bytes=size)


async def bench_hop(bootstrap: str, count: int, work_dir: Path, **options: Any) -> dict[str, Any]:
    prefix = _prefix("hop")
    size = await _loop_topics(bootstrap, prefix, count)
    freeze_survivors()
    watch = await run_hop(bootstrap, prefix, count, work_dir, **options)
    return loop_section(watch, count, message_bytes=size, **{k: v for k, v in options.items()})


async def raw_and_hop(
    bootstrap: str, work_dir: Path, plan: BenchPlan, say: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, float]]]:
    """Raw and hop in rounds, each round the two back to back, so that a slower minute of a shared
    machine weighs on both sides of its ratio; returns the median round's figures and every round's."""
    # Untimed: the first loop on a fresh broker ran on its not yet compiled hot paths, which made the
    # first round's ratio the highest of every run
    say(f"raw and hop: warming the broker up with {plan.messages} messages")
    await bench_raw(bootstrap, plan.messages)
    pairs = []
    for n in range(1, plan.rounds + 1):
        say(f"raw and hop, round {n} of {plan.rounds}: {plan.messages} messages each")
        raw = await bench_raw(bootstrap, plan.messages)
        hop = await bench_hop(bootstrap, plan.messages, work_dir)
        pairs.append((hop["rate_per_s"] / raw["rate_per_s"] if raw["rate_per_s"] else 0.0, raw, hop))
    rounds = [
        {"raw_per_s": raw["rate_per_s"], "hop_per_s": hop["rate_per_s"], "hop_over_raw": round(ratio, 3)}
        for ratio, raw, hop in pairs
    ]
    _, raw, hop = sorted(pairs, key=lambda pair: pair[0])[len(pairs) // 2]
    return raw, hop, rounds


async def bench_pipeline(bootstrap: str, work_dir: Path, plan: BenchPlan, say: Callable[[str], None]) -> Any:
    bench = PipelineBench(bootstrap, work_dir / "stack", _prefix("stack"))
    say("pipeline: starting the stack (every service and sandbox its own process)")
    await asyncio.to_thread(bench.start)
    try:
        await bench.open()
        say(f"pipeline: warming up with {plan.warmup_dossiers} births (broker JIT, connections, caches)")
        await bench.max_rate(plan.warmup_dossiers)
        say(f"pipeline: {plan.dossiers} births at the maximum rate")
        maximum = await bench.max_rate(plan.dossiers)
        half = max(1.0, maximum.rate / 2)
        say(f"pipeline: {half:.1f} births/s (half the maximum) for {plan.fixed_rate_s:g} s")
        fixed = await bench.fixed_rate(half, plan.fixed_rate_s)
        failing = bench.stack.agencies[-1].value
        say(f"isolation: {plan.dossiers} births and {failing} dossiers, every agency healthy")
        baseline = await bench.mixed(plan.dossiers)
        say(f"isolation: the same while the {failing} agency fails every call")
        isolation = await bench.isolation(plan.dossiers)
        rss = bench.peak_rss_mb()
    finally:
        await bench.aclose()
        await asyncio.to_thread(bench.stop)
    return maximum, fixed, baseline, isolation, half, rss


async def run_all(plan: BenchPlan, say: Callable[[str], None] = print) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lienthong-bench-") as tmp:
        work_dir = Path(tmp)
        with kafka_endpoint(work_dir / "kafka", allow_docker=False) as endpoint:
            say(f"Kafka: {endpoint.description}")
            bootstrap = endpoint.bootstrap_servers
            raw, hop, rounds = await raw_and_hop(bootstrap, work_dir, plan, say)
            say(f"replay: {plan.dead_letters} dead letters")
            replay_watch, replayed = await run_replay(bootstrap, _prefix("dlq"), plan.dead_letters)
            phases = await bench_pipeline(bootstrap, work_dir, plan, say)
            replicas = await bench_replicas(bootstrap, work_dir, plan, say)
    maximum, fixed, baseline, isolation, half, rss = phases
    rss["bench (raw + hop in process)"] = round(peak_rss_mb(os.getpid()), 1)
    hop_ratio = hop["rate_per_s"] / raw["rate_per_s"] if raw["rate_per_s"] else 0.0
    # The failure's effect alone: births per second with the failing agency's dossiers in the traffic,
    # against the same traffic with that agency healthy (on two cores, the extra dossiers' own CPU
    # slows the births whether or not their agency fails)
    isolation_ratio = isolation.rate / baseline.rate if baseline.rate else 0.0
    births_only_ratio = isolation.rate / maximum.rate if maximum.rate else 0.0
    service_rss = {k: v for k, v in rss.items() if not k.startswith("bench")}
    fixed_section = phase_section(fixed, offered_rate_per_s=round(half, 2))
    replica_section = replicas_section(replicas)
    replica_ratios = replica_section["ratios"]
    return {
        "meta": {
            "broker": endpoint.description,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "plan": plan.__dict__,
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "raw": raw,
        "hop": hop,
        "raw_hop_rounds": rounds,
        "pipeline": {
            "procedure": "9.900003 (birth: civil_status, then residence and social_insurance in parallel)",
            "max": phase_section(maximum),
            "half_load": fixed_section,
        },
        "isolation_baseline": phase_section(baseline, failing_agency=None, extra_procedure="9.900006"),
        "isolation": phase_section(
            isolation, failing_agency="business_registry", failing_procedure="9.900006"
        ),
        "replay": {
            "dead_letters": replayed,
            "wall_s": round(replay_watch.wall_s, 3),
            "rate_per_s": round(replayed / replay_watch.wall_s, 1) if replay_watch.wall_s else 0.0,
            "cpu_s_per_1k": round(replay_watch.cpu_s / max(replayed, 1) * 1000, 3),
        },
        "peak_rss_mb": rss,
        "ratios": {
            "hop_over_raw": round(hop_ratio, 3),
            "isolation_over_pipeline": round(isolation_ratio, 3),
            "isolation_over_births_only_max": round(births_only_ratio, 3),
            **replica_ratios,
        },
        "targets": {
            "hop_over_raw >= 0.5": hop_ratio >= 0.5,
            "pipeline p99 <= 250 ms at half load": fixed_section["p99_ms"] <= 250,
            "isolation_over_pipeline >= 0.9": isolation_ratio >= 0.9,
            "service RSS <= 150 MB": all(v <= RSS_LIMIT_MB for v in service_rss.values()),
            **replica_targets(replica_ratios),
        },
        "database_and_replicas": replica_section,
    }


def table(result: dict[str, Any]) -> str:
    rows = [("part", "rate", "p50 ms", "p99 ms", "p99.9 ms", "CPU s/1k")]
    for name in ("raw", "hop", "replay"):
        part = result[name]
        rows.append((name, f"{part['rate_per_s']:.1f} msg/s", "", "", "", f"{part['cpu_s_per_1k']:.3f}"))
    for name, part in (
        ("pipeline max", result["pipeline"]["max"]),
        ("pipeline half load", result["pipeline"]["half_load"]),
        ("isolation baseline", result["isolation_baseline"]),
        ("isolation", result["isolation"]),
    ):
        rows.append(
            (
                name,
                f"{part['rate_per_s']:.2f} dossiers/s",
                f"{part['p50_ms']:.0f}",
                f"{part['p99_ms']:.0f}",
                f"{part['p99_9_ms']:.0f}",
                f"{part['cpu_s_per_1k_dossiers']:.1f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines += [f"{k}: {v}" for k, v in result["ratios"].items()]
    if len(result["raw_hop_rounds"]) > 1:
        each = ", ".join(f"{r['hop_over_raw']:.2f}" for r in result["raw_hop_rounds"])
        lines.append(f"hop_over_raw by round: {each} (the median round is reported)")
    lines += replica_lines(result["database_and_replicas"])
    lines.append("peak RSS MB: " + ", ".join(f"{k} {v:.0f}" for k, v in result["peak_rss_mb"].items()))
    lines += [f"target {k}: {'met' if v else 'NOT met'}" for k, v in result["targets"].items()]
    return "\n".join(lines)


async def bench_replicas(
    bootstrap: str, work_dir: Path, plan: BenchPlan, say: Callable[[str], None]
) -> ReplicaResult:
    return await run_replicas(
        bootstrap,
        work_dir / "replicas",
        rounds=plan.replica_rounds,
        dossiers=plan.dossiers,
        warmup_dossiers=plan.replica_warmup_dossiers,
        prefix=_prefix,
        say=say,
    )


def _median(values: Sequence[float]) -> float:
    """The median round's value (the lower middle one for an even count): a measured round, never
    an average of two."""
    return sorted(values)[(len(values) - 1) // 2] if values else 0.0


def stall_section(stall: StallResult) -> dict[str, Any]:
    return {
        "window_s": round(stall.window_s, 2),
        "longest_gap_s": round(stall.longest_gap_s, 3),
        "completions_in_window": stall.completions_in_window,
        **({"instance_restart_s": [round(s, 2) for s in stall.restart_s]} if stall.restart_s else {}),
        **(latency_summary(stall.traffic.latencies_ms) if stall.traffic else {}),
    }


def replicas_section(result: ReplicaResult) -> dict[str, Any]:
    """Every round's maximum rates and ratios, the median round's ratios, and the restart stall."""
    rounds: list[dict[str, Any]] = [
        {
            **{name: phase_section(r.phases[name]) for name, _, _ in CONFIGURATIONS},
            "postgresql_over_sqlite": round(r.pg_over_sqlite, 3),
            "two_over_one_instance": round(r.two_over_one, 3),
        }
        for r in result.rounds
    ]
    return {
        "procedure": "9.900003 (birth), maximum rate, each configuration on a fresh stack and database",
        "postgresql": result.server,
        "rounds": rounds,
        "ratios": {
            "postgresql_over_sqlite": _median([r["postgresql_over_sqlite"] for r in rounds]),
            "two_over_one_instance": _median([r["two_over_one_instance"] for r in rounds]),
        },
        "rolling_restart": {
            "restarted": "router",
            "configuration": "postgresql_x2",
            "offered_rate_per_s": round(result.offered_rate_per_s, 2),
            "during_restart": stall_section(result.restart),
            "without_restart": stall_section(result.reference),
        },
    }


def replica_targets(ratios: dict[str, float]) -> dict[str, bool]:
    return {
        "postgresql_over_sqlite >= 0.8": ratios["postgresql_over_sqlite"] >= 0.8,
        "two_over_one_instance >= 0.9": ratios["two_over_one_instance"] >= 0.9,
    }


def replica_lines(section: dict[str, Any]) -> list[str]:
    lines = []
    for n, r in enumerate(section["rounds"], 1):
        rates = ", ".join(f"{name} {r[name]['rate_per_s']:.2f}" for name, _, _ in CONFIGURATIONS)
        lines.append(
            f"database and replicas, round {n}: {rates} dossiers/s; PostgreSQL ÷ SQLite "
            f"{r['postgresql_over_sqlite']:.3f}, 2 ÷ 1 instances {r['two_over_one_instance']:.3f}"
        )
    if len(section["rounds"]) > 1:
        lines.append("database and replicas: the median round's ratio is reported for each ratio")
    rolling = section["rolling_restart"]
    during, without = rolling["during_restart"], rolling["without_restart"]
    lines.append(
        f"rolling restart of the router (postgresql_x2, {rolling['offered_rate_per_s']:.1f} births/s): "
        f"longest gap between completions {during['longest_gap_s']:.2f} s over {during['window_s']:.1f} s "
        f"(instances took {', '.join(f'{s:.1f}' for s in during.get('instance_restart_s', []))} s; "
        f"p99 {during['p99_ms']:.0f} ms); without a restart {without['longest_gap_s']:.2f} s "
        f"(p99 {without['p99_ms']:.0f} ms)"
    )
    return lines


async def run_replicas_only(plan: BenchPlan, say: Callable[[str], None] = print) -> dict[str, Any]:
    """The database and replicas part alone, on its own broker (warmed up by its untimed births)."""
    with tempfile.TemporaryDirectory(prefix="lienthong-bench-") as tmp:
        work_dir = Path(tmp)
        with kafka_endpoint(work_dir / "kafka", allow_docker=False) as endpoint:
            say(f"Kafka: {endpoint.description}")
            replicas = await bench_replicas(endpoint.bootstrap_servers, work_dir, plan, say)
    section = replicas_section(replicas)
    return {
        "meta": {
            "broker": endpoint.description,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "plan": plan.__dict__,
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "database_and_replicas": section,
        "targets": replica_targets(section["ratios"]),
    }


def replicas_table(result: dict[str, Any]) -> str:
    lines = replica_lines(result["database_and_replicas"])
    lines += [f"{k}: {v}" for k, v in result["database_and_replicas"]["ratios"].items()]
    lines += [f"target {k}: {'met' if v else 'NOT met'}" for k, v in result["targets"].items()]
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")

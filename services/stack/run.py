"""The main job: the local bus with a real broker, every service, sample traffic and a live summary."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from schemas.agencies import Agency
from services.localkafka import daemon
from services.localkafka.choice import KafkaEndpoint, kafka_endpoint
from services.localkafka.process import port_open
from services.stack.stack import DEFAULT_AGENCIES, HOST, LocalStack, StackPorts
from services.stack.traffic import Submitted, Traffic


@dataclass(frozen=True)
class RunOptions:
    work_dir: Path
    rate_per_s: float = 1.0
    duration_s: float = 0.0  # 0: until Ctrl-C
    seed: int = 2026


@contextmanager
def _kafka(work_dir: Path) -> Iterator[KafkaEndpoint]:
    """A broker started with `lienthong broker start` is reused; otherwise the usual choice."""
    running = daemon.status()
    if running.running and running.state is not None:
        bootstrap = running.state.bootstrap_servers
        yield KafkaEndpoint(bootstrap, "local", f"the running local broker at {bootstrap}")
        return
    with kafka_endpoint(work_dir / "kafka", allow_docker=False) as endpoint:
        yield endpoint


def _check_ports(ports: StackPorts) -> None:
    taken = [
        p
        for p in (
            ports.intake,
            ports.router,
            ports.tracker,
            *ports.connectors.values(),
            *ports.sandboxes.values(),
        )
        if port_open(HOST, p)
    ]
    if taken:
        raise SystemExit(
            f"Ports already in use on {HOST}: {', '.join(map(str, taken))}. Is another stack running?"
        )


def summary_line(stats: dict[str, Any], started: float) -> str:
    """One line of the live terminal summary, from the tracker's ``GET /stats``."""
    totals = stats["totals"]
    by_status = {row["code"]: row["count"] for row in stats["by_status"]}
    agencies = "  ".join(
        f"{row['agency']} {row['completed']}✓ {row['open']}… {row['stuck']}✗"
        for row in stats["by_agency"]
        if row["completed"] or row["open"] or row["stuck"]
    )
    return (
        f"[{time.monotonic() - started:5.0f}s] dossiers {totals['dossiers']}: "
        f"{totals['in_progress']} in progress ({totals['paused']} waiting for payment), "
        f"{by_status.get(9, 0)} completed, {by_status.get(8, 0)} returned, {totals['stuck_dossiers']} stuck, "
        f"{totals['overdue']} overdue | {agencies}"
    )


async def _traffic_loop(
    traffic: Traffic, options: RunOptions, echo: Callable[[str], None], tracker_url: str
) -> None:
    rng = random.Random(options.seed)
    kinds = [
        (traffic.land_transfer, 25),
        (traffic.first_certificate, 10),
        (traffic.marriage, 25),
        (traffic.birth, 15),
        (traffic.death, 8),
        (traffic.household_business, 10),
        (lambda: traffic.land_transfer(wrong_owner=True), 7),
    ]
    started = time.monotonic()
    next_submit = next_report = started
    async with httpx.AsyncClient(timeout=5.0) as http:
        while options.duration_s <= 0 or time.monotonic() - started < options.duration_s:
            now = time.monotonic()
            if now >= next_submit:
                make = rng.choices([k for k, _ in kinds], weights=[w for _, w in kinds])[0]
                submitted: Submitted = await make()  # type: ignore[operator]
                next_submit = now + 1.0 / options.rate_per_s
                del submitted
            if now >= next_report:
                await traffic.pay_waiting_notices()
                with contextlib.suppress(httpx.HTTPError):
                    echo(summary_line((await http.get(f"{tracker_url}/stats")).json(), started))
                next_report = now + 2.0
            await asyncio.sleep(0.05)


def run(options: RunOptions, echo: Callable[[str], None] = print) -> None:
    agencies = DEFAULT_AGENCIES
    ports = StackPorts.fixed(agencies)
    _check_ports(ports)
    if options.work_dir.exists():
        shutil.rmtree(options.work_dir / "stack", ignore_errors=True)
    with _kafka(options.work_dir) as kafka:
        echo(f"Kafka: {kafka.description}")
        stack = LocalStack(
            kafka.bootstrap_servers, options.work_dir / "stack", agencies=agencies, ports=ports
        )
        echo("Starting the agency sandboxes and the services …")
        with stack:
            echo(f"  intake API      {stack.intake_url}/docs   (POST /dossiers, GET /procedures)")
            echo(f"  tracker API     {stack.tracker_url}/docs   (GET /dossiers, GET /stats)")
            for name, port in (
                ("intake", ports.intake),
                ("router", ports.router),
                ("tracker", ports.tracker),
            ):
                echo(f"  {name:<15} {stack.url(port)}/metrics  {stack.url(port)}/health")
            for agency in agencies:
                echo(f"  sandbox {agency.value:<7} {stack.sandbox_url(agency)}")
            echo(f"  logs            {stack.log_dir}")
            echo("Sample dossiers are flowing; Ctrl-C stops everything.")
            traffic = Traffic(
                stack.intake_url,
                stack.tracker_url,
                stack.sandbox_url(Agency.LAND),
                stack.sandbox_url(Agency.TAX),
                seed=options.seed,
            )

            async def main() -> None:
                try:
                    await _traffic_loop(traffic, options, echo, stack.tracker_url)
                finally:
                    await traffic.aclose()

            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(main())
            echo("Stopping …")
    echo("Stopped: no process left behind.")

"""The main job: the local bus with a real broker, every service, sample traffic and a live summary.

A few faults are injected on a schedule (:data:`FAULTS`): an agency failing a share of its calls (the
connector's in-process retries absorb it) and an agency down for a while (the handoffs go through the
delayed retry tiers and complete once it is back). The summary shows them: per-agency call rates,
retries (in-process and delayed) and dead letters, read from the connectors' ``/metrics``.

SIGINT and SIGTERM stop the run in order (:class:`StopSignals`), and while it serves the run records
itself (:func:`services.tools.stack.discovery.recorded`) so that the other commands find its broker.

``--database postgres`` keeps every service's state in PostgreSQL: the database in
``LIENTHONG_DATABASE_URL`` when one is given, otherwise a server of the machine's own PostgreSQL
programs started in the work folder (:class:`services.tools.localpg.server.LocalPostgres`, no Docker)
with a new database for the run. ``--replicas N`` then runs N instances of every service (the
sandboxes stay single); the submissions are spread over the intakes, and the run prints which
instance holds which partitions, again whenever that changes.

The run is secured as a deployment is (:mod:`services.tools.stack.secured`): its own broker asks for
SASL/SCRAM and enforces ACLs, every service connects as its own principal and signs its events with
its own key, and every consumer verifies what it reads. ``--insecure`` runs the broker in PLAINTEXT
without ACLs (and then reuses a running ``lienthong broker start`` broker); the events stay signed.
A cluster given in ``KAFKA_BOOTSTRAP_SERVERS`` is used as it is: its principals and ACLs are its own.

Sign-in is on by default (:mod:`services.tools.stack.signin`): the run starts the local OpenID Connect
provider (Keycloak, with the demo users and client systems of ``deploy/oidc/lienthong-realm.json``),
intake takes dossiers only from signed-in client systems (the sample traffic signs in as the counter
application and the online portal), and the supervision page signs staff in; the summary says how.
``--no-sign-in`` runs both open, for development, and every summary line says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import shutil
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from connectors.errors import ConnectorError
from schemas.agencies import Agency
from services.tools.localkafka import daemon
from services.tools.localkafka.choice import KafkaEndpoint, kafka_endpoint
from services.tools.localkafka.process import port_open
from services.tools.localpg.server import LocalPostgres, drop_database, redacted, server_folder
from services.tools.stack import discovery
from services.tools.stack.migrations import check_reachable
from services.tools.stack.secured import StackAccess, secured_local_broker
from services.tools.stack.signin import sign_in_lines
from services.tools.stack.stack import DEFAULT_AGENCIES, HOST, LocalStack, StackPorts, connector_kind
from services.tools.stack.traffic import Submitted, Traffic


@dataclass(frozen=True)
class RunOptions:
    work_dir: Path
    rate_per_s: float = 1.0
    duration_s: float = 0.0  # 0: until Ctrl-C
    seed: int = 2026
    faults: bool = True  # inject the scheduled faults (FAULTS)
    prometheus: bool = False  # also run a local Prometheus, when its binary is installed
    free_ports: bool = False  # free ports instead of the documented fixed ones (StackPorts.fixed)
    database: str = "sqlite"  # or "postgres" (DATABASES)
    replicas: int = 1  # instances of every service (more than one needs "postgres")
    secure: bool = True  # SASL/SCRAM, one principal per service, ACLs (secured_broker)
    sign_in: bool = True  # client systems and staff sign in with the local OIDC provider (signin)


DATABASES = ("sqlite", "postgres")
DATABASE_URL_ENV = "LIENTHONG_DATABASE_URL"
RUN_DATABASE = "lienthong"  # the database a run makes on its own PostgreSQL server


@dataclass(frozen=True)
class Fault:
    """A fault a sandbox is told to inject (``PUT /_sandbox/faults``) ``at_s`` seconds into the run."""

    at_s: float
    agency: Agency
    update: Mapping[str, Any]
    says: str


FAULTS: tuple[Fault, ...] = (
    Fault(5, Agency.CIVIL_STATUS, {"failure_rate": 0.15}, "the civil-status registry fails 15% of its calls"),
    Fault(20, Agency.TAX, {"down_for_s": 15}, "the tax authority is down for 15 s"),
)
PROMETHEUS_PORT = 9090
PROMETHEUS_CONFIG = Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "prometheus.yml"


@dataclass
class AgencyCounters:
    """What the connectors' ``/metrics`` say about one agency, cumulated since their start."""

    calls: float = 0.0
    failed_calls: float = 0.0
    retries: float = 0.0  # in-process (blip) retries
    delayed: float = 0.0  # handoffs sent to a delayed retry tier
    dead_letters: float = 0.0
    outcomes: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, other: AgencyCounters) -> None:
        """Count ``other``'s too (another instance of the same agency's connector)."""
        self.calls += other.calls
        self.failed_calls += other.failed_calls
        self.retries += other.retries
        self.delayed += other.delayed
        self.dead_letters += other.dead_letters
        for kind, count in other.outcomes.items():
            self.outcomes[kind] += count


def agency_counters(exposition: str) -> dict[str, AgencyCounters]:
    """Per-agency counters from a Prometheus text exposition (a connector's ``/metrics``)."""
    counters: dict[str, AgencyCounters] = defaultdict(AgencyCounters)
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            agency = sample.labels.get("agency")
            if agency is None or not sample.name.endswith("_total"):
                continue
            c = counters[agency]
            if sample.name == "lienthong_agency_calls_total":
                c.calls += sample.value
                if sample.labels.get("result") in ("transient", "protocol"):
                    c.failed_calls += sample.value
            elif sample.name == "lienthong_agency_call_retries_total":
                c.retries += sample.value
            elif sample.name == "lienthong_delayed_retries_total":
                c.delayed += sample.value
            elif sample.name == "lienthong_dead_letters_total":
                c.dead_letters += sample.value
            elif sample.name == "lienthong_handoff_outcomes_total":
                c.outcomes[sample.labels.get("kind", "")] += sample.value
    return dict(counters)


def agencies_line(
    now: Mapping[str, AgencyCounters], before: Mapping[str, AgencyCounters], interval_s: float
) -> str:
    """The summary's second line: per agency, calls a second, failed calls, retries and dead letters."""
    parts = []
    for agency, c in sorted(now.items()):
        if not (c.calls or c.delayed or c.dead_letters):
            continue
        previous = before.get(agency, AgencyCounters())
        rate = (c.calls - previous.calls) / interval_s if interval_s > 0 else 0.0
        parts.append(
            f"{agency} {rate:.1f} calls/s, {c.failed_calls:.0f} failed, "
            f"retries {c.retries:.0f}+{c.delayed:.0f} delayed, {c.dead_letters:.0f} dead"
        )
    return "         agencies: " + (" | ".join(parts) if parts else "no calls yet")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """SIGINT and SIGTERM stop the run, whatever it inherited: a shell starts ``lienthong run &`` with
    SIGINT ignored (and Python then sets no handler of its own), and SIGTERM would end it at once.

    While the run starts, the first signal raises :class:`KeyboardInterrupt` where the run is, so
    that what was started is stopped on the way out; once it serves (:meth:`serving`), a signal only
    asks the traffic loop to end (:attr:`requested`). Every later signal is ignored, so that it cannot
    cut the stopping short. The handlers found are put back on exit.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._interrupt = True
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def serving(self) -> None:
        self._interrupt = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            return
        self.signum = signum
        if self._interrupt:
            raise KeyboardInterrupt

    def __enter__(self) -> StopSignals:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        # The interrupt raised for a stop signal has done its work once everything is stopped.
        return exc_type is KeyboardInterrupt and self.signum is not None


@contextmanager
def run_kafka(work_dir: Path, secure: bool = True) -> Iterator[tuple[KafkaEndpoint, StackAccess | None]]:
    """The cluster in ``KAFKA_BOOTSTRAP_SERVERS``, as it is; else, secured, the run's own broker with
    SASL/SCRAM and ACLs. Insecure: a broker started with `lienthong broker start` is reused, otherwise
    the run's own PLAINTEXT broker."""
    if secure and not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        with secured_local_broker(work_dir / "kafka") as (broker, access):
            dist = broker.distribution
            yield (
                KafkaEndpoint(
                    broker.bootstrap_servers,
                    "local",
                    f"the local Kafka broker (Apache Kafka {dist.version} jars from {dist.source}, "
                    f"no Docker) at {broker.bootstrap_servers}, SASL/SCRAM with ACLs",
                    broker,
                ),
                access,
            )
        return
    running = daemon.status()
    if not secure and running.running and running.state is not None:
        bootstrap = running.state.bootstrap_servers
        yield KafkaEndpoint(bootstrap, "local", f"the running local broker at {bootstrap}"), None
        return
    with kafka_endpoint(work_dir / "kafka", allow_docker=False) as endpoint:
        yield endpoint, None


def security_lines(stack: LocalStack) -> list[str]:
    """What the run prints about how its processes are kept apart."""
    keys = f"events signed with each producer's own key ({stack.private_keys_dir}), verified on reading"
    if stack.access is None:
        return [f"  security        {keys}; Kafka without principals or ACLs"]
    folder = stack.access.admin_password_file.parent
    return [
        f"  security        SASL/SCRAM, a Kafka principal per service with its ACLs (passwords in {folder});",
        f"                  {keys}",
    ]


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


SIGN_IN_OFF = "SIGN-IN OFF (--no-sign-in): open to anyone"


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


async def _scrape(http: httpx.AsyncClient, urls: list[str]) -> dict[str, AgencyCounters]:
    """Per-agency counters summed over the connectors at ``urls`` (each instance counts its own)."""
    counters: dict[str, AgencyCounters] = defaultdict(AgencyCounters)
    for url in urls:
        with contextlib.suppress(httpx.HTTPError):
            for agency, found in agency_counters((await http.get(f"{url}/metrics")).text).items():
                counters[agency].add(found)
    return dict(counters)


async def _partition_lines(stack: LocalStack) -> list[str]:
    """Which instance holds which partitions (empty when Kafka does not answer the question now)."""
    try:
        return await asyncio.to_thread(stack.assignment_lines)
    except Exception:  # a broker blip or a group in the middle of a rebalance: ask again next time
        return []


async def _inject(
    http: httpx.AsyncClient, stack: LocalStack, fault: Fault, echo: Callable[[str], None]
) -> None:
    try:
        answer = await http.put(
            f"{stack.sandbox_url(fault.agency)}/_sandbox/faults",
            json=dict(fault.update),
            headers=stack.sandbox_admin_headers(),
        )
        answer.raise_for_status()
        echo(f"  ⚡ fault injected: {fault.says}")
    except httpx.HTTPError as error:
        echo(f"  could not inject a fault ({fault.says}): {error}")


async def _traffic_loop(
    traffic: Traffic,
    options: RunOptions,
    echo: Callable[[str], None],
    stack: LocalStack,
    stop_requested: Callable[[], bool] = lambda: False,
) -> None:
    tracker_url = stack.tracker_url
    connector_urls = [url for agency in stack.agencies for url in stack.urls(connector_kind(agency))]
    intakes = itertools.cycle(stack.urls("intake"))  # a load balancer in front of the intakes
    shown_partitions = await _partition_lines(stack) if stack.replicas > 1 else []
    pending_faults = sorted(FAULTS if options.faults else (), key=lambda f: f.at_s)
    before: dict[str, AgencyCounters] = {}
    last_report = time.monotonic()
    rng = random.Random(options.seed)
    kinds = [
        (traffic.land_transfer, 25),
        (traffic.first_certificate, 10),
        (traffic.marriage, 15),
        (lambda: traffic.marriage(channel="online"), 10),  # the online portal's client, with sign-in
        (traffic.birth, 15),
        (traffic.death, 8),
        (traffic.household_business, 10),
        (lambda: traffic.land_transfer(wrong_owner=True), 7),
    ]
    started = time.monotonic()
    next_submit = next_report = started
    async with httpx.AsyncClient(timeout=5.0) as http:
        while not stop_requested() and (
            options.duration_s <= 0 or time.monotonic() - started < options.duration_s
        ):
            now = time.monotonic()
            if now >= next_submit:
                make = rng.choices([k for k, _ in kinds], weights=[w for _, w in kinds])[0]
                traffic.intake_url = next(intakes)
                submitted: Submitted = await make()  # type: ignore[operator]
                next_submit = now + 1.0 / options.rate_per_s
                del submitted
            while pending_faults and now - started >= pending_faults[0].at_s:
                await _inject(http, stack, pending_faults.pop(0), echo)
            if now >= next_report:
                # The bank cannot reach a tax authority that is down (a fault above): pay next round.
                with contextlib.suppress(httpx.HTTPError, ConnectorError):
                    await traffic.pay_waiting_notices()
                with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                    stats = await http.get(f"{tracker_url}/stats", headers=await traffic.tracker_headers())
                    stats.raise_for_status()
                    line = summary_line(stats.json(), started)
                    echo(line if stack.sign_in is not None else f"{line} | {SIGN_IN_OFF}")
                counters = await _scrape(http, connector_urls)
                echo(agencies_line(counters, before, now - last_report))
                before, last_report = counters, now
                if stack.replicas > 1:
                    lines = await _partition_lines(stack)
                    if lines and lines != shown_partitions:
                        for line in moved_lines(shown_partitions, lines):
                            echo(f"         partitions moved: {line}")
                        shown_partitions = lines
                next_report = now + 2.0
            await asyncio.sleep(0.05)


@contextmanager
def _prometheus(options: RunOptions, echo: Callable[[str], None]) -> Iterator[None]:
    """A local Prometheus on deploy/prometheus/prometheus.yml, when asked for and installed."""
    binary = shutil.which("prometheus") if options.prometheus else None
    if options.prometheus and binary is None:
        echo("  prometheus      not installed (apt-get install prometheus); running without it")
    if binary is not None and options.free_ports:
        echo("  prometheus      its scrape config names the fixed ports; not started with --free-ports")
        binary = None
    if binary is None:
        yield
        return
    if port_open(HOST, PROMETHEUS_PORT):
        echo(f"  prometheus      port {PROMETHEUS_PORT} is taken; running without it")
        yield
        return
    storage = options.work_dir / "prometheus"
    storage.mkdir(parents=True, exist_ok=True)
    log = (options.work_dir / "prometheus.log").open("ab")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={PROMETHEUS_CONFIG}",
            f"--storage.tsdb.path={storage}",
            f"--web.listen-address={HOST}:{PROMETHEUS_PORT}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
    )
    echo(f"  prometheus      http://{HOST}:{PROMETHEUS_PORT}   (rules: deploy/prometheus/rules)")
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@contextmanager
def _database(options: RunOptions, echo: Callable[[str], None]) -> Iterator[str | None]:
    """The run's PostgreSQL database (None on SQLite): the one in ``LIENTHONG_DATABASE_URL``, else a
    new database on a server started in the work folder for the run (stopped when the run ends)."""
    if options.database != "postgres":
        yield None
        return
    given = os.environ.get(DATABASE_URL_ENV)
    if given:
        try:
            check_reachable(given)
        except psycopg.Error as error:
            raise SystemExit(
                f"Cannot reach the PostgreSQL in {DATABASE_URL_ENV} ({redacted(given)}): {error}"
            ) from None
        echo(f"PostgreSQL: the database in {DATABASE_URL_ENV}, {redacted(given)} (its data is kept)")
        yield given
        return
    with server_folder((options.work_dir / "postgres").resolve()) as folder:
        server = LocalPostgres(folder, database="postgres")
        server.start()
        try:
            drop_database(server.url, RUN_DATABASE)  # every run starts empty, as its SQLite files do
            url = server.create_database(RUN_DATABASE)
            echo(f"PostgreSQL: a local server ({server.binaries.version}) in {folder}, database {url}")
            yield url
        finally:
            server.stop()


def moved_lines(before: list[str], now: list[str]) -> list[str]:
    """What changed between two listings of :meth:`LocalStack.assignment_lines`: the instances whose
    line changed, and those no longer in any group."""

    def instance(line: str) -> str:
        return line.split(":", 1)[0].split(" ", 1)[0]

    present = {instance(line) for line in now}
    changed = [line for line in now if line not in before]
    left = [f"{instance(line)}: left its groups" for line in before if instance(line) not in present]
    return changed + left


def partitions_header(replicas: int) -> str:
    """The line above the run's first listing of who holds which partitions."""
    return f"Partitions ({replicas} instances of every service, one consumer group per service):"


def inspect_lines(bootstrap_servers: str, access: StackAccess | None = None) -> list[str]:
    """What the run prints about the commands that look into it from another shell."""
    elsewhere = f"  elsewhere add --bootstrap-servers {bootstrap_servers}"
    if access is not None:
        elsewhere += (
            f" and LIENTHONG_SECURITY_PROTOCOL=SASL_PLAINTEXT LIENTHONG_SASL_USERNAME={access.admin_username}"
            f" LIENTHONG_SASL_PASSWORD=$(cat {access.admin_password_file})"
        )
    return [
        "Inspect it from another shell; these find this stack's broker, credentials and data by themselves:",
        "  lienthong dlq list                  (dead letters; dlq show <id>, dlq replay)",
        "  lienthong topics create --dry-run   (the declared topics, those present marked)",
        "  lienthong audit show <dossier id>   (a dossier's chain of custody)",
        elsewhere,
    ]


def run(options: RunOptions, echo: Callable[[str], None] = print) -> int | None:
    """Run until ``options.duration_s`` is over or a stop signal comes; returns that signal's number
    (None when the duration ended the run)."""
    with StopSignals() as stop:
        _run(options, echo, stop)
    if stop.requested:
        echo(f"Stopped on {stop.name}: no process left behind.")
    else:
        echo("Stopped: no process left behind.")
    return stop.signum


def _run(options: RunOptions, echo: Callable[[str], None], stop: StopSignals) -> None:
    agencies = DEFAULT_AGENCIES
    ports = StackPorts.free(agencies) if options.free_ports else StackPorts.fixed(agencies)
    _check_ports(ports)
    if options.replicas > 1 and options.database != "postgres":
        raise SystemExit(
            "Replicas share their state in a database: add --database postgres (a SQLite store belongs "
            "to one process)."
        )
    if options.work_dir.exists():
        shutil.rmtree(options.work_dir / "stack", ignore_errors=True)
    with (
        _database(options, echo) as database_url,
        run_kafka(options.work_dir, options.secure) as (kafka, access),
    ):
        echo(f"Kafka: {kafka.description}")
        stack = LocalStack(
            kafka.bootstrap_servers,
            options.work_dir / "stack",
            agencies=agencies,
            ports=ports,
            replicas=options.replicas,
            database_url=database_url,
            access=access,
            sign_in=options.sign_in,
        )
        if options.sign_in:
            echo("Sign-in: starting the local OpenID Connect provider (Keycloak) …")
        what = "the services" if options.replicas == 1 else f"{options.replicas} instances of every service"
        echo(f"Starting the agency sandboxes and {what} …")
        with stack:
            echo(f"  supervision     {stack.tracker_url}/giam-sat   (the center's page; ?lang=en)")
            echo(f"  intake API      {stack.intake_url}/docs   (POST /dossiers, GET /procedures)")
            echo(f"  tracker API     {stack.tracker_url}/docs   (GET /dossiers, GET /stats)")
            for kind in ("intake", "router", "tracker"):
                for instance in stack.instances(kind):
                    url = stack.url(instance.port)
                    echo(f"  {instance.name:<15} {url}/metrics  {url}/health")
            for agency in agencies:
                for instance in stack.instances(connector_kind(agency)):
                    label = agency.value if options.replicas == 1 else f"{agency.value}-{instance.index}"
                    echo(f"  connector {label:<17} {stack.url(instance.port)}/metrics")
            for agency in agencies:
                echo(f"  sandbox {agency.value:<19} {stack.sandbox_url(agency)}")
            echo(f"  logs            {stack.log_dir}")
            for line in security_lines(stack):
                echo(line)
            provider = stack.oidc_provider
            described = f"a local Keycloak at {provider.base_url}" if provider is not None else ""
            for line in sign_in_lines(stack.tracker_url, stack.sign_in, described):
                echo(line)
            echo(
                f"  sandbox faults  /_sandbox/faults needs the admin token kept in"
                f" {stack.sandbox_admin_token_file}"
            )
            if options.replicas > 1:
                echo(partitions_header(options.replicas))
                for line in stack.assignment_lines():
                    echo(f"  {line}")
            for line in inspect_lines(stack.bootstrap_servers, access):
                echo(line)
            echo("Sample dossiers are flowing; Ctrl-C (or SIGTERM) stops everything.")
            traffic = Traffic(
                stack.intake_url,
                stack.tracker_url,
                stack.sandbox_url(Agency.LAND),
                stack.sandbox_url(Agency.TAX),
                seed=options.seed,
                sign_in=stack.sign_in,
            )

            async def main() -> None:
                try:
                    await _traffic_loop(traffic, options, echo, stack, lambda: stop.requested)
                finally:
                    await traffic.aclose()

            state = discovery.StackState.of_this_process(
                stack.bootstrap_servers,
                stack.topic_prefix,
                options.work_dir,
                stack.work_dir / "data",
                stack.tracker_url,
                sasl=(access.mechanism, access.admin_username, access.admin_password_file)
                if access
                else None,
                oidc_issuer=stack.oidc_issuer if stack.sign_in is not None else None,
                sandbox_admin_token_file=stack.sandbox_admin_token_file,
            )
            with discovery.recorded(state), _prometheus(options, echo):
                stop.serving()
                if not stop.requested:
                    asyncio.run(main())
            echo(f"Stopping on {stop.name} …" if stop.requested else "Stopping …")

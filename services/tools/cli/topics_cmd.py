"""``lienthong topics list|create``: the declared topics, and creating the missing ones on a cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import typer

from schemas.topics import (
    MAX_DEFAULT_REPLICATION_FACTOR,
    ReplicationError,
    TopicSpec,
    all_topics,
    choose_replication,
)
from services.runtime.shell.topics_admin import (
    PlannedTopic,
    TopicCreationError,
    TopicPlanResult,
    ensure_declared_topics,
    plan_topics,
)
from services.tools.cli import target
from services.tools.localkafka.process import port_open

app = typer.Typer(help="Kafka topics of the bus: list the declared ones, create the missing ones.")

_BOOTSTRAP_OPTION = typer.Option(None, "--bootstrap-servers", help=target.bootstrap_help("bootstrap servers"))
_PREFIX_OPTION = typer.Option("", "--prefix", help="Prepended to every topic name (e.g. t1234.).")
_CREATE_PREFIX_OPTION = typer.Option(
    None, "--prefix", help="Prepended to every topic name (e.g. t1234.). " + target.PREFIX_HELP
)


def human_duration(ms: int) -> str:
    """``1209600000`` → ``14d``; ``-1`` → ``forever``."""
    if ms < 0:
        return "forever"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def render_table(rows: Sequence[tuple[TopicSpec, str]], *, replication: bool = False) -> str:
    """A plain-text table of topics and their action (with ``replication``, their replicas and
    ``min.insync.replicas`` too)."""
    header: tuple[str, ...] = ("topic", "partitions", "retention", "cleanup", "action")
    body: list[tuple[str, ...]] = [
        (s.name, str(s.partitions), human_duration(s.retention_ms), s.cleanup_policy.value, action)
        for s, action in rows
    ]
    if replication:
        header = (*header[:2], "replicas", "min.isr", *header[2:])
        body = [
            (*row[:2], str(s.replication_factor), str(s.min_insync), *row[2:])
            for row, (s, _) in zip(body, rows, strict=True)
        ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *body]
    ]
    return "\n".join(lines)


def answers_tcp(bootstrap: str, timeout: float = 1.0) -> bool:
    """Whether any address of a bootstrap list accepts a connection (an unparsable one counts as yes:
    the Kafka client then says what is wrong with it)."""
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        if not host or not port.isdigit():
            return True
        if port_open(host.strip("[]"), int(port), timeout):
            return True
    return False


def offline_plan(
    prefix: str, replication_factor: int | None, min_insync_replicas: int | None
) -> TopicPlanResult:
    """The plan without a cluster: every declared topic to be created, in the requested number of
    copies, else the default of 3 (the broker count, which would lower it, is unknown)."""
    factor = MAX_DEFAULT_REPLICATION_FACTOR if replication_factor is None else replication_factor
    replication = choose_replication(factor, factor, min_insync_replicas)
    return plan_topics(all_topics(prefix, replication), {})


def _print_offline_plan(plan: TopicPlanResult, bootstrap: str, why: str, requested: int | None) -> None:
    typer.echo(render_table([(p.spec, "would create") for p in plan.topics], replication=True))
    typer.echo(
        f"\nwould create {len(plan.created)}: the plan was made without asking a cluster ({why} at"
        f" {bootstrap}), so topics that already exist are not marked"
    )
    spec = plan.topics[0].spec
    assumed = (
        "as requested with --replication-factor; refused on a cluster with fewer brokers"
        if requested is not None
        else f"assumed: the default of {MAX_DEFAULT_REPLICATION_FACTOR}; a cluster with fewer brokers gets"
        " one copy per broker"
    )
    typer.echo(
        f"replication factor {spec.replication_factor}, min.insync.replicas {spec.min_insync} ({assumed})"
    )


def _action(planned: PlannedTopic) -> str:
    if planned.under_replicated:
        return f"{planned.action.value} (rf {planned.current_replication_factor})"
    return planned.action.value


def _rows(planned: Sequence[PlannedTopic]) -> list[tuple[TopicSpec, str]]:
    return [(p.spec, _action(p)) for p in planned]


def under_replicated_report(planned: Sequence[PlannedTopic]) -> str:
    """The warning about existing topics that keep fewer copies than requested ("" when none)."""
    if not planned:
        return ""
    wanted = max(p.spec.replication_factor for p in planned)
    names = ", ".join(f"{p.spec.name} ({p.current_replication_factor})" for p in planned)
    return (
        f"warning: {len(planned)} existing topics keep fewer than {wanted} copies and were left as they"
        f" are (raising it is a partition reassignment, kafka-reassign-partitions.sh): {names}"
    )


@app.command("list")
def list_topics(prefix: str = _PREFIX_OPTION) -> None:
    """Print the declared topics (no cluster needed)."""
    typer.echo(render_table([(spec, "-") for spec in all_topics(prefix)]))


@app.command()
def create(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show what would be created."),
    bootstrap_servers: str | None = _BOOTSTRAP_OPTION,
    prefix_option: str | None = _CREATE_PREFIX_OPTION,
    replication_factor: int | None = typer.Option(
        None,
        "--replication-factor",
        min=1,
        help="Copies of each new topic (default: 3, or the number of brokers on a smaller cluster).",
    ),
    min_insync_replicas: int | None = typer.Option(
        None,
        "--min-insync-replicas",
        min=1,
        help="Copies that must have a write before acks=all acknowledges it (default: 2, 1 without copies).",
    ),
) -> None:
    """Create the declared topics the cluster lacks; existing topics are left untouched (those with
    fewer copies than asked for are reported). A dry run with no cluster answering prints the plan
    made without one."""
    cluster = target.kafka(bootstrap_servers, prefix_option)
    bootstrap, prefix = cluster.bootstrap_servers, cluster.topic_prefix
    unasked: str | None = None  # why the plan is made without a cluster
    if dry_run and not answers_tcp(bootstrap):
        unasked = "nothing answers"
    else:
        try:
            result = asyncio.run(
                ensure_declared_topics(
                    bootstrap,
                    prefix,
                    replication_factor=replication_factor,
                    min_insync_replicas=min_insync_replicas,
                    dry_run=dry_run,
                    **cluster.client_options(),
                )
            )
        except ReplicationError as error:
            typer.secho(str(error), fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        except TopicCreationError as error:
            typer.secho(f"the broker refused some topics: {error}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        except Exception as error:  # connection failures surface as several aiokafka error types
            if not dry_run:
                typer.secho(f"cannot reach Kafka at {bootstrap}: {error!r}", fg=typer.colors.RED, err=True)
                raise typer.Exit(1) from None
            unasked = f"Kafka does not answer: {error!r}"
    if unasked is not None:
        try:
            plan = offline_plan(prefix, replication_factor, min_insync_replicas)
        except ReplicationError as error:
            typer.secho(str(error), fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        _print_offline_plan(plan, bootstrap, unasked, replication_factor)
        return
    typer.echo(render_table(_rows(result.topics), replication=True))
    verb = "would create" if dry_run else "created"
    typer.echo(f"\n{verb} {len(result.created)}, already present {len(result.existing)} (at {bootstrap})")
    if result.topics:
        spec = result.topics[0].spec
        typer.echo(
            f"replication factor {spec.replication_factor}, min.insync.replicas {spec.min_insync}"
            f" ({result.brokers} brokers)"
        )
    report = under_replicated_report(result.under_replicated)
    if report:
        typer.secho(report, fg=typer.colors.YELLOW, err=True)

"""``lienthong broker start|stop|status``: a local Apache Kafka broker (or small cluster) without Docker."""

from __future__ import annotations

import time

import typer

from services.tools.localkafka import daemon
from services.tools.localkafka.errors import BrokerError

app = typer.Typer(
    help="Run a local Apache Kafka (KRaft) broker, or a cluster of several (--nodes), from Apache Kafka's"
    " own jars."
)


def _fail(error: BrokerError) -> None:
    typer.secho(str(error), fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@app.command()
def start(
    port: int = typer.Option(daemon.DEFAULT_PORT, help="Client (PLAINTEXT) port on 127.0.0.1."),
    controller_port: int = typer.Option(daemon.DEFAULT_CONTROLLER_PORT, help="KRaft controller port."),
    fresh: bool = typer.Option(False, help="Delete the broker's data (all topics) before starting."),
    nodes: int = typer.Option(
        1,
        "--nodes",
        min=1,
        help="Nodes of the cluster, each its own JVM (broker and controller); node i listens on"
        " --port + 2(i-1), its controller on --controller-port + 2(i-1). Internal topics keep"
        " min(3, nodes) copies.",
    ),
) -> None:
    """Start the broker in the background (resolving its jars with Maven on first use)."""
    began = time.monotonic()
    try:
        state = daemon.start(port=port, controller_port=controller_port, fresh=fresh, nodes=nodes)
    except BrokerError as error:
        _fail(error)
        return
    took = f"[{time.monotonic() - began:.1f} s]"
    if state.size == 1:
        typer.echo(
            f"Kafka {state.version} broker running (pid {state.pid}) at {state.bootstrap_servers} {took}"
        )
    else:
        pids = ", ".join(str(node.pid) for node in state.members)
        typer.echo(
            f"Kafka {state.version} cluster of {state.size} nodes running (pids {pids}) at "
            f"{state.bootstrap_servers} {took}"
        )
    typer.echo(f"export KAFKA_BOOTSTRAP_SERVERS={state.bootstrap_servers}")


@app.command()
def status() -> None:
    """Say whether the broker runs and answers metadata requests (exit 1 when it does not)."""
    current = daemon.status()
    if current.state is None:
        typer.echo("No local broker is running (start one with: lienthong broker start).")
        raise typer.Exit(1)
    state = current.state
    if state.size > 1:
        _cluster_status(current, state)
        return
    if current.running:
        typer.echo(
            f"running: Kafka {state.version}, pid {state.pid}, "
            f"bootstrap {state.bootstrap_servers}, answers metadata requests"
        )
        return
    why = "its process has ended" if not current.process_alive else "it does not answer metadata requests"
    typer.echo(f"not running: pid {state.pid} at {state.bootstrap_servers}, {why}")
    raise typer.Exit(1)


def _cluster_status(current: daemon.BrokerStatus, state: daemon.BrokerState) -> None:
    nodes = ", ".join(
        f"node {node.node_id} pid {node.pid} {'up' if current.nodes_alive.get(node.node_id) else 'ended'}"
        for node in state.members
    )
    brokers = f"reports {current.reported_brokers} of {state.size} brokers"
    if current.running:
        typer.echo(
            f"running: Kafka {state.version}, {state.size} nodes ({nodes}), "
            f"bootstrap {state.bootstrap_servers}, answers metadata requests, {brokers}"
        )
        return
    typer.echo(f"not running: {nodes}; the cluster at {state.bootstrap_servers} {brokers}")
    raise typer.Exit(1)


@app.command()
def stop(
    timeout: float = typer.Option(30.0, help="Seconds to wait for an orderly shutdown before SIGKILL."),
) -> None:
    """Stop the broker, every node of a cluster at once (SIGTERM, then SIGKILL after the timeout)."""
    try:
        stopped = daemon.stop(timeout=timeout)
    except BrokerError as error:
        _fail(error)
        return
    typer.echo("broker stopped" if stopped else "no broker was running")


@app.command()
def prepare() -> None:
    """Resolve Apache Kafka's jars into the cache now (Maven, once), so the first start is quick."""
    from services.tools.localkafka.jars import resolve_distribution

    try:
        dist = resolve_distribution(quiet=True)
    except BrokerError as error:
        _fail(error)
        return
    typer.echo(f"Apache Kafka {dist.version} jars ready ({dist.source}).")

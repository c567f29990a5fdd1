"""``lienthong broker start|stop|status``: a local Apache Kafka broker without Docker."""

from __future__ import annotations

import time

import typer

from services.localkafka import daemon
from services.localkafka.errors import BrokerError

app = typer.Typer(help="Run a local single-node Apache Kafka (KRaft) broker from Apache Kafka's own jars.")


def _fail(error: BrokerError) -> None:
    typer.secho(str(error), fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@app.command()
def start(
    port: int = typer.Option(daemon.DEFAULT_PORT, help="Client (PLAINTEXT) port on 127.0.0.1."),
    controller_port: int = typer.Option(daemon.DEFAULT_CONTROLLER_PORT, help="KRaft controller port."),
    fresh: bool = typer.Option(False, help="Delete the broker's data (all topics) before starting."),
) -> None:
    """Start the broker in the background (resolving its jars with Maven on first use)."""
    began = time.monotonic()
    try:
        state = daemon.start(port=port, controller_port=controller_port, fresh=fresh)
    except BrokerError as error:
        _fail(error)
        return
    typer.echo(
        f"Kafka {state.version} broker running (pid {state.pid}) at {state.bootstrap_servers} "
        f"[{time.monotonic() - began:.1f} s]"
    )
    typer.echo(f"export KAFKA_BOOTSTRAP_SERVERS={state.bootstrap_servers}")


@app.command()
def status() -> None:
    """Say whether the broker runs and answers metadata requests (exit 1 when it does not)."""
    current = daemon.status()
    if current.state is None:
        typer.echo("No local broker is running (start one with: lienthong broker start).")
        raise typer.Exit(1)
    if current.running:
        typer.echo(
            f"running: Kafka {current.state.version}, pid {current.state.pid}, "
            f"bootstrap {current.state.bootstrap_servers}, answers metadata requests"
        )
        return
    why = "its process has ended" if not current.process_alive else "it does not answer metadata requests"
    typer.echo(f"not running: pid {current.state.pid} at {current.state.bootstrap_servers}, {why}")
    raise typer.Exit(1)


@app.command()
def stop(
    timeout: float = typer.Option(30.0, help="Seconds to wait for an orderly shutdown before SIGKILL."),
) -> None:
    """Stop the broker (SIGTERM, then SIGKILL after the timeout)."""
    try:
        stopped = daemon.stop(timeout=timeout)
    except BrokerError as error:
        _fail(error)
        return
    typer.echo("broker stopped" if stopped else "no broker was running")


@app.command()
def prepare() -> None:
    """Resolve Apache Kafka's jars into the cache now (Maven, once), so the first start is quick."""
    from services.localkafka.jars import resolve_distribution

    try:
        dist = resolve_distribution(quiet=True)
    except BrokerError as error:
        _fail(error)
        return
    typer.echo(f"Apache Kafka {dist.version} jars ready ({dist.source}).")

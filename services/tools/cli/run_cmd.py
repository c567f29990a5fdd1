"""``lienthong run``: the local bus with a real broker, every service and sample traffic."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from services.tools.localkafka.errors import BrokerError


def run(
    rate: float = typer.Option(1.0, help="Sample dossiers submitted per second."),
    duration: float = typer.Option(0.0, help="Stop after this many seconds (0: run until Ctrl-C)."),
    work_dir: Path = typer.Option(Path("var/run"), help="Where the stores, logs and broker data go."),
    seed: int = typer.Option(2026, help="Seed of the sample traffic."),
    faults: bool = typer.Option(True, "--faults/--no-faults", help="Inject the scheduled agency faults."),
    prometheus: bool = typer.Option(False, "--prometheus", help="Also run a local Prometheus if installed."),
    free_ports: bool = typer.Option(
        False,
        "--free-ports",
        help="Put the services and sandboxes on free ports instead of the documented 8000-8002, 8100+"
        " and 8200+ (the URLs printed are the ones to use; no --prometheus then).",
    ),
    database: str | None = typer.Option(
        None,
        "--database",
        help="Where the services keep their state: sqlite (a file per service) or postgres (the database"
        " in $LIENTHONG_DATABASE_URL, else a local PostgreSQL server started in the work dir)."
        " Default: postgres when $LIENTHONG_DATABASE_URL is set, else sqlite.",
    ),
    replicas: int = typer.Option(
        1,
        "--replicas",
        min=1,
        help="Instances of every service (intake, router, tracker, each connector); more than one needs"
        " --database postgres.",
    ),
    insecure: bool = typer.Option(
        False,
        "--insecure",
        help="Run the broker in PLAINTEXT without principals or ACLs (and reuse a running `lienthong broker"
        " start` broker). By default the broker asks for SASL/SCRAM, every service connects as its own"
        " principal under ACLs; the events are signed and verified either way.",
    ),
    sign_in: bool = typer.Option(
        True,
        "--sign-in/--no-sign-in",
        help="Client systems and staff sign in with the local OpenID Connect provider (Keycloak, demo users"
        " and clients of deploy/oidc/lienthong-realm.json; needs Java 21+). --no-sign-in runs intake and"
        " the supervision page open to anyone, for development only; the summary says so on every line.",
    ),
) -> None:
    """Start the broker, the agency sandboxes and every service, and feed sample dossiers.

    SIGINT (Ctrl-C) and SIGTERM stop everything in order, also when started in the background; the
    exit code is then 128 + the signal's number (130, 143), as a shell reports a signal.
    """
    from services.tools.localoidc.errors import ProviderError
    from services.tools.localpg.server import PostgresError
    from services.tools.stack.migrations import NewerSchema
    from services.tools.stack.run import DATABASE_URL_ENV, DATABASES, RunOptions
    from services.tools.stack.run import run as run_stack

    chosen = database or ("postgres" if os.environ.get(DATABASE_URL_ENV) else "sqlite")
    if chosen not in DATABASES:
        typer.secho(
            f"--database is one of {', '.join(DATABASES)}, not {chosen!r}", fg=typer.colors.RED, err=True
        )
        raise typer.Exit(2)
    if replicas > 1 and chosen != "postgres":
        typer.secho(
            f"--replicas {replicas} needs --database postgres: the instances of a service share its state,"
            " and a SQLite store belongs to one process.",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    try:
        options = RunOptions(
            work_dir=work_dir,
            rate_per_s=rate,
            duration_s=duration,
            seed=seed,
            faults=faults,
            prometheus=prometheus,
            free_ports=free_ports,
            database=chosen,
            replicas=replicas,
            secure=not insecure,
            sign_in=sign_in,
        )
        stopped_by = run_stack(options, typer.echo)
    except ProviderError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "it did not start"
        typer.secho(
            f"Sign-in needs the local OpenID Connect provider (Keycloak), which could not start ({first}):"
            " install Java 21+ and Maven and run `python -m services.tools.localoidc prepare`, or run"
            " `lienthong run --no-sign-in` for development without sign-in.",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1) from None
    except (BrokerError, PostgresError, NewerSchema) as error:
        typer.secho(str(error), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    if stopped_by is not None:
        raise typer.Exit(128 + stopped_by)

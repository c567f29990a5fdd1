"""The ``lienthong`` command: the single entry point for everything the project offers."""

from __future__ import annotations

import typer

from services.tools.cli import (
    asyncapi_cmd,
    audit_cmd,
    bench_cmd,
    broker_cmd,
    catalog_cmd,
    connector_cmd,
    db_cmd,
    dlq_cmd,
    keys_cmd,
    login_cmd,
    run_cmd,
    schemas_cmd,
    topics_cmd,
)

app = typer.Typer(
    name="lienthong",
    help="Liên Thông: the inter-agency handoff bus for one-stop public administration centers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command(name="run")(run_cmd.run)
app.command(name="login")(login_cmd.login)
app.command(name="logout")(login_cmd.logout)
app.add_typer(broker_cmd.app, name="broker")
app.add_typer(topics_cmd.app, name="topics")
app.add_typer(schemas_cmd.app, name="schemas")
app.add_typer(catalog_cmd.app, name="catalog")
app.add_typer(dlq_cmd.app, name="dlq")
app.add_typer(asyncapi_cmd.app, name="asyncapi")
app.add_typer(connector_cmd.app, name="connector")
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(bench_cmd.app, name="bench")
app.add_typer(db_cmd.app, name="db")

"""The ``lienthong`` command: the single entry point for everything the project offers."""

from __future__ import annotations

import typer

from services.cli import broker_cmd

app = typer.Typer(
    name="lienthong",
    help="Liên Thông: the inter-agency handoff bus for one-stop public administration centers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(broker_cmd.app, name="broker")

"""The cluster (or tracker data) a command uses, chosen once for every command
(:mod:`services.tools.stack.discovery`), with the line on stderr that says where it was found."""

from __future__ import annotations

from pathlib import Path

import typer

from services.tools.stack.discovery import KafkaTarget, choose_data_dir, choose_kafka


def bootstrap_help(what: str) -> str:
    return (
        f"Kafka {what} (default: $KAFKA_BOOTSTRAP_SERVERS, else the broker of a running `lienthong run`"
        ", else a running `lienthong broker start` broker, else 127.0.0.1:9092)."
    )


PREFIX_HELP = (
    "Topic prefix of the environment (default: $LIENTHONG_TOPIC_PREFIX, else the running stack's when"
    " its broker is used, else none)."
)


def kafka(bootstrap_servers: str | None, topic_prefix: str | None) -> KafkaTarget:
    target = choose_kafka(bootstrap_servers, topic_prefix)
    if target.notice:
        typer.echo(target.notice, err=True)
    return target


def data_dir() -> Path:
    path, notice = choose_data_dir()
    if notice:
        typer.echo(notice, err=True)
    return path

"""``lienthong asyncapi export|check``: the event catalogue, one AsyncAPI document per service.

Each document is generated from the service's FastStream broker (services.runtime.shell.asyncapi), the
same one the running service serves at ``/asyncapi.json``. Apps are built with default settings and
no topic prefix, in a throw-away data directory; building an app never connects to Kafka.
"""

from __future__ import annotations

import difflib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from services.runtime.shell.asyncapi import document_text

ASYNCAPI_DIR = Path(__file__).resolve().parents[3] / "deploy" / "asyncapi"
_DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

app = typer.Typer(
    help="The AsyncAPI documents of every service (deploy/asyncapi/): export them from the code, or "
    "check that the committed ones match it."
)

_DIR_OPTION = typer.Option(ASYNCAPI_DIR, "--dir", help="Directory of the committed documents.")


@contextmanager
def service_documents() -> Iterator[dict[str, dict[str, Any]]]:
    """``{service name: AsyncAPI document}`` for intake, router, tracker and one connector per agency
    of the connector registry."""
    from connectors.registry import available_agencies
    from services.connector.app import build_app as build_connector
    from services.connector.settings import ConnectorSettings
    from services.intake.app import IntakeSettings
    from services.intake.app import build_app as build_intake
    from services.router.app import RouterSettings
    from services.router.app import build_app as build_router
    from services.runtime.shell.asyncapi import asyncapi_document
    from services.tracker.app import TrackerSettings
    from services.tracker.app import build_app as build_tracker

    with tempfile.TemporaryDirectory(prefix="lienthong-asyncapi-") as tmp:
        common: dict[str, Any] = {
            "bootstrap_servers": _DEFAULT_BOOTSTRAP,
            "topic_prefix": "",
            "data_dir": Path(tmp),
        }
        apps = {
            "intake": build_intake(IntakeSettings(**common)),
            "router": build_router(RouterSettings(**common)),
            "tracker": build_tracker(TrackerSettings(**common, staff_sign_in="off")),  # only its document
        }
        for agency in sorted(available_agencies(), key=lambda a: a.value):
            apps[f"connector-{agency.value}"] = build_connector(ConnectorSettings(agency=agency, **common))
        yield {
            name: asyncapi_document(built.state.broker, name, description=built.description)
            for name, built in apps.items()
        }


def expected_files() -> dict[str, str]:
    """File name → content, as ``export`` writes them."""
    with service_documents() as documents:
        return {f"{name}.json": document_text(doc) for name, doc in documents.items()}


def differences(directory: Path) -> list[str]:
    """Unified diffs between the committed documents and the code's (empty when they agree)."""
    expected = expected_files()
    found = {p.name: p.read_text(encoding="utf-8") for p in sorted(directory.glob("*.json"))}
    diffs: list[str] = []
    for name in sorted(expected.keys() | found.keys()):
        if name not in found:
            diffs.append(f"missing: {directory.name}/{name} (a service with no committed document)\n")
        elif name not in expected:
            diffs.append(f"stale: {directory.name}/{name} (no service has this document any more)\n")
        elif found[name] != expected[name]:
            diffs.append(
                "".join(
                    difflib.unified_diff(
                        found[name].splitlines(keepends=True),
                        expected[name].splitlines(keepends=True),
                        fromfile=f"committed/{name}",
                        tofile=f"code/{name}",
                    )
                )
            )
    return diffs


@app.command()
def export(directory: Path = _DIR_OPTION) -> None:
    """Write every service's AsyncAPI document (and remove documents of services that are gone)."""
    directory.mkdir(parents=True, exist_ok=True)
    expected = expected_files()
    for stale in directory.glob("*.json"):
        if stale.name not in expected:
            stale.unlink()
    for name, text in expected.items():
        (directory / name).write_text(text, encoding="utf-8")
        typer.echo(f"wrote {directory.name}/{name}")


@app.command()
def check(directory: Path = _DIR_OPTION) -> None:
    """Compare the committed documents with the code; exit 1 with a diff when they disagree."""
    diffs = differences(directory)
    if diffs:
        for diff in diffs:
            typer.echo(diff, nl=False)
        typer.secho(
            f"{len(diffs)} AsyncAPI document(s) differ from the code: run `lienthong asyncapi export` "
            "and commit the result.",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)
    typer.echo("AsyncAPI documents match the code.")

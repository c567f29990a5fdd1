"""``python -m services.tools.localoidc prepare``: download, unpack and build Keycloak into the cache now
(once), so the first provider a test run or the local stack starts only starts. ``make setup`` runs it."""

from __future__ import annotations

import sys
import time

import typer

from services.tools.localoidc.distribution import require_java, resolve_distribution
from services.tools.localoidc.errors import ProviderError
from services.tools.localoidc.provider import ensure_built

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="The local OpenID Connect provider (Keycloak)."
)


@app.callback()
def main() -> None:
    """The local OpenID Connect provider (Keycloak)."""


@app.command()
def prepare() -> None:
    """Resolve Keycloak's distribution (Maven, once) and build it for development mode (once)."""
    started = time.monotonic()
    try:
        java = require_java()
        dist = resolve_distribution(quiet=True)
        ensure_built(dist, java)
    except ProviderError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(1)
    typer.echo(
        f"Keycloak {dist.version} ready ({dist.source}, Java {java}) in {time.monotonic() - started:.0f} s."
    )


if __name__ == "__main__":
    app()

"""The cost per request of checking a client system's access token at intake: a real Keycloak token
(client credentials, RS256) validated ``count`` times per round by :class:`BearerVerifier` with the
keys cached, as every request after the first pays it. Prints every round and the median, in
microseconds per validation.

``python -m services.tools.bench.auth [--rounds 7] [--count 2000] [--issuer URL --secret S]``: without
``--issuer`` it starts the local provider (services.tools.localoidc) in a temporary folder.
"""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx
import typer

from services.intake.auth import AUDIENCE
from services.runtime.auth.bearer import BearerVerifier


def _token(issuer: str, client_id: str, secret: str) -> str:
    endpoint = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()["token_endpoint"]
    answer = httpx.post(
        endpoint, data={"grant_type": "client_credentials"}, auth=(client_id, secret), timeout=10
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


async def measure(issuer: str, token: str, rounds: int, count: int) -> list[float]:
    """Microseconds per validation, one figure per round of ``count`` validations."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    moment = datetime.fromtimestamp(claims["iat"] + 1, UTC)  # the token's own time, not the machine's
    verifier = BearerVerifier(issuer, AUDIENCE, now=lambda: moment)
    await verifier.verify(token)  # fetches the discovery document and the keys once
    figures = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(count):
            await verifier.verify(token)
        figures.append((time.perf_counter() - started) / count * 1e6)
    return figures


def main(
    rounds: int = typer.Option(7, min=1),
    count: int = typer.Option(2000, min=1),
    issuer: str | None = typer.Option(None, help="An external issuer; the local Keycloak if unset."),
    client_id: str = typer.Option("counter-app"),
    secret: str = typer.Option(
        "counter-app-demo-secret", help="The client's secret (the demo one by default)."
    ),
) -> None:
    with ExitStack() as stack:
        if issuer is None:
            from services.tools.localoidc.provider import LocalOidcProvider

            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-auth-")))
            provider = stack.enter_context(LocalOidcProvider(work))
            issuer = provider.issuer()
        token = _token(issuer, client_id, secret)
        figures = asyncio.run(measure(issuer, token, rounds, count))
    for number, figure in enumerate(figures, 1):
        typer.echo(f"round {number}: {figure:.1f} µs per validation ({count} validations)")
    typer.echo(f"median: {statistics.median(figures):.1f} µs per validation (RS256, keys cached)")


if __name__ == "__main__":
    typer.run(main)

"""The cost per request of checking a client system's access token at intake: a real Keycloak token
(client credentials, RS256) validated ``count`` times per round by :class:`BearerVerifier` with the
keys cached, as every request after the first pays it. Prints every round and the median, in
microseconds per validation.

Then what a submission costs at intake with the check on and off: births posted to intake's app
in-process (httpx over ASGI: no network, no broker; the outbox is written as in service), one app
with the token check and one without, alternating round by round so that both meet the same noise.
Each round prints microseconds per accepted submission for both and their ratio; the median ratio
is the figure to compare.

``python -m services.tools.bench.auth [--rounds 7] [--count 2000] [--submissions 300]
[--issuer URL --secret S]``: without ``--issuer`` it starts the local provider
(services.tools.localoidc) in a temporary folder.
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

CLIENTS_FILE = Path(__file__).resolve().parents[3] / "deploy" / "oidc" / "clients.yaml"


def _token(issuer: str, client_id: str, secret: str) -> str:
    endpoint = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()["token_endpoint"]
    answer = httpx.post(
        endpoint, data={"grant_type": "client_credentials"}, auth=(client_id, secret), timeout=10
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def _token_time(token: str) -> datetime:
    """A second after the token was issued: the clock the checks run on (the token's, not the machine's)."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return datetime.fromtimestamp(claims["iat"] + 1, UTC)


async def measure(issuer: str, token: str, rounds: int, count: int) -> list[float]:
    """Microseconds per validation, one figure per round of ``count`` validations."""
    moment = _token_time(token)
    verifier = BearerVerifier(issuer, AUDIENCE, now=lambda: moment)
    await verifier.verify(token)  # fetches the discovery document and the keys once
    figures = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(count):
            await verifier.verify(token)
        figures.append((time.perf_counter() - started) / count * 1e6)
    return figures


async def measure_intake(
    issuer: str, token: str, rounds: int, count: int, work: Path
) -> list[tuple[float, float]]:
    """Microseconds per accepted submission, (without the check, with it), one pair per round."""
    from services.intake.app import IntakeSettings, build_app
    from services.tools.stack.samples import SampleDossiers

    moment = _token_time(token)
    samples = SampleDossiers(2026, today=lambda: moment.date())
    apps = {
        checked: build_app(
            IntakeSettings(
                data_dir=work / ("checked" if checked else "open"),
                oidc_issuer=issuer if checked else None,
                oidc_clients_file=CLIENTS_FILE if checked else None,
            ),
            now=lambda: moment,
        )
        for checked in (False, True)
    }
    headers: dict[bool, dict[str, str]] = {False: {}, True: {"Authorization": f"Bearer {token}"}}
    keys = {"serial": 0}

    async def post_all(checked: bool, http: httpx.AsyncClient) -> float:
        started = time.perf_counter()
        for _ in range(count):
            keys["serial"] += 1
            key = {"Idempotency-Key": f"bench-auth-{keys['serial']}"}
            answer = await http.post("/dossiers", json=samples.birth(), headers=headers[checked] | key)
            if answer.status_code != 201:
                raise RuntimeError(f"intake refused ({answer.status_code}): {answer.text[:300]}")
        return (time.perf_counter() - started) / count * 1e6

    clients = {
        checked: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake")
        for checked, app in apps.items()
    }
    try:
        for checked, http in clients.items():  # warm up: the keys fetched, the store's first writes
            await post_all(checked, http)
        return [
            (await post_all(False, clients[False]), await post_all(True, clients[True]))
            for _ in range(rounds)
        ]
    finally:
        for http in clients.values():
            await http.aclose()


def main(
    rounds: int = typer.Option(7, min=1),
    count: int = typer.Option(2000, min=1),
    submissions: int = typer.Option(300, min=1, help="Births posted to intake per round."),
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
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-auth-intake-")))
        pairs = asyncio.run(measure_intake(issuer, token, rounds, submissions, work))
    for number, figure in enumerate(figures, 1):
        typer.echo(f"round {number}: {figure:.1f} µs per validation ({count} validations)")
    typer.echo(f"median: {statistics.median(figures):.1f} µs per validation (RS256, keys cached)")
    typer.echo(f"intake, {submissions} births per round, µs per accepted submission:")
    for number, (open_us, checked_us) in enumerate(pairs, 1):
        typer.echo(
            f"round {number}: without the check {open_us:.0f}, with it {checked_us:.0f}"
            f" (with ÷ without {checked_us / open_us:.3f})"
        )
    ratios = [checked_us / open_us for open_us, checked_us in pairs]
    typer.echo(f"median round: with ÷ without {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    typer.run(main)

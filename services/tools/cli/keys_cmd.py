"""``lienthong keys new|list|rotate|remove|k8s-secrets|compose-secrets``: producers' signing keys and
the trust store, and the Secrets of a deployment.

The private key goes to ``--private-dir`` (default ``$LIENTHONG_DATA_DIR/keys``, never the repository;
the file is readable by its owner only); the public key goes to the trust store ``--trust-store``
(default ``deploy/keys``), which consumers read through ``LIENTHONG_TRUST_STORE``.

``k8s-secrets`` writes the Kubernetes Secrets the kustomize base reads (a signing key per producer,
the trust store, a Kafka principal per process) with a kustomization to apply them;
``compose-secrets`` fills the Compose file's secrets volume (its one-shot ``keys`` job runs it).
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from services.runtime.trust import keys

app = typer.Typer(help="Event signing keys: one Ed25519 key per producer, and the trust store.")


def _default_private_dir() -> Path:
    return Path(os.environ.get("LIENTHONG_DATA_DIR", "var")) / "keys"


def _default_trust_store() -> Path:
    return Path(os.environ.get("LIENTHONG_TRUST_STORE", "deploy/keys"))


_PRIVATE = typer.Option(None, "--private-dir", help="Where private keys are written (not the repository).")
_TRUST = typer.Option(None, "--trust-store", help="The trust store directory of public keys.")


def _dirs(private_dir: Path | None, trust_store: Path | None) -> tuple[Path, Path]:
    return private_dir or _default_private_dir(), trust_store or _default_trust_store()


@app.command()
def new(
    producer: str = typer.Argument(..., help="intake, router, connector.land, …"),
    private_dir: Path | None = _PRIVATE,
    trust_store: Path | None = _TRUST,
) -> None:
    """Create the first key of a producer (refused if it has one: use rotate)."""
    private, trusted = _dirs(private_dir, trust_store)
    if keys.private_key_path(private, producer).exists():
        typer.echo(
            f"{producer} already has a key; `lienthong keys rotate {producer}` makes a new one", err=True
        )
        raise typer.Exit(1)
    _make(producer, private, trusted)


@app.command()
def rotate(
    producer: str = typer.Argument(...),
    private_dir: Path | None = _PRIVATE,
    trust_store: Path | None = _TRUST,
) -> None:
    """A new key for the producer; its old public key stays trusted until `keys remove`."""
    private, trusted = _dirs(private_dir, trust_store)
    path = keys.private_key_path(private, producer)
    old = keys.load_signing_key(path).key_id if path.exists() else None
    _make(producer, private, trusted)
    if old is not None:
        typer.echo(f"still trusted: {old} (remove it with `lienthong keys remove {old}` once drained)")


def _make(producer: str, private: Path, trusted: Path) -> None:
    try:
        key = keys.new_key(producer, private, trusted)
    except keys.KeyFileError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"new key {key.key_id} for {producer}")
    typer.echo(f"  private key: {keys.private_key_path(private, producer)} (set LIENTHONG_SIGNING_KEY to it)")
    typer.echo(f"  public key:  {trusted / (key.key_id + '.json')}")


@app.command(name="list")
def list_keys(private_dir: Path | None = _PRIVATE, trust_store: Path | None = _TRUST) -> None:
    """Every trusted key: id, producer, creation time, and whether it is the producer's signing key here."""
    private, trusted = _dirs(private_dir, trust_store)
    try:
        entries = keys.load_trust_store(trusted) if trusted.is_dir() else {}
    except keys.KeyFileError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    if not entries:
        typer.echo(f"no trusted keys in {trusted}")
        return
    for entry in sorted(entries.values(), key=lambda e: (e.producer, e.created_at)):
        path = keys.private_key_path(private, entry.producer)
        signing = path.exists() and keys.load_signing_key(path).key_id == entry.key_id
        state = "signing" if signing else "trusted"
        typer.echo(f"{entry.key_id:<48} {entry.producer:<28} {entry.created_at:<26} {state}")


@app.command()
def remove(key_id: str = typer.Argument(...), trust_store: Path | None = _TRUST) -> None:
    """Stop trusting a key (the end of a rotation): events signed with it are quarantined from now on."""
    _, trusted = _dirs(None, trust_store)
    if not keys.remove_key(trusted, key_id):
        typer.echo(f"no trusted key {key_id} in {trusted}", err=True)
        raise typer.Exit(1)
    typer.echo(f"removed {key_id}")


_OUT = typer.Option(..., "--out", help="Directory to write into (never the repository).")


@app.command("k8s-secrets")
def k8s_secrets(
    out: Path = _OUT, private_dir: Path | None = _PRIVATE, trust_store: Path | None = _TRUST
) -> None:
    """Write the Kubernetes Secrets of a deployment: each producer's signing key (made, and trusted,
    when it has none), the trust store, and each process's Kafka principal with a random password
    (kept when written before); then `kubectl apply -k OUT`."""
    from services.tools.deploy.secrets import write_k8s_secrets

    private, trusted = _dirs(private_dir, trust_store)
    try:
        written = write_k8s_secrets(out, private, trusted)
    except keys.KeyFileError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {len(written) - 1} Secrets and a kustomization in {out}: kubectl apply -k {out}")
    typer.echo(f"  private keys: {private} (keep them there, or in your vault, and nowhere else)")


@app.command("compose-secrets")
def compose_secrets(out: Path = _OUT) -> None:
    """Fill a Docker Compose secrets volume: signing keys, trust store, Kafka and database passwords
    (what is already there is kept)."""
    from services.tools.deploy.secrets import write_compose_secrets

    written = write_compose_secrets(out)
    typer.echo(f"secrets in {out}: {len(written)} files (signing keys and trust store kept as they were)")

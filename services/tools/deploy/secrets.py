"""The Secrets a deployment reads, declared in one place: their names, their keys and who supplies them.

No Secret with a credential is part of the kustomize base (applying a placeholder would overwrite the
real one). The base reads:

- ``lienthong-kafka-<process>``: each process's Kafka principal, ``LIENTHONG_SASL_USERNAME`` and
  ``LIENTHONG_SASL_PASSWORD`` (the names :class:`~services.runtime.shell.settings.KafkaSettings`
  reads); ``lienthong-kafka-lienthong-admin`` for the topics job. With Strimzi the ``KafkaUser`` of each
  principal takes its password from the same Secret.
- ``lienthong-signing-<process>``: the process's private signing key, one file ``<producer>.key.json``.
- ``lienthong-trust-store``: every producer's public key, ``<key id>.json`` (mounted whole), and the
  dead-letter tool's (``dlq-tool``: its private key stays with the operators, for ``lienthong dlq replay``).
- ``lienthong-session``: key ``session.secret``, what signs the supervision page's session cookies,
  the same for every tracker replica (services.tools.deploy.identity).
- ``lienthong-db-app``: key ``uri``, the PostgreSQL URL; made by CloudNativePG for the ``Cluster``
  ``lienthong-db``, or by the operator for an external database.
- ``lienthong-cluster-ca-cert``: key ``ca.crt``, the CA of the brokers' certificates; made by Strimzi
  for a ``Kafka`` named ``lienthong``, or by the operator for another cluster.

``lienthong keys k8s-secrets`` writes the first four (:func:`k8s_secret_documents`);
``lienthong keys compose-secrets`` writes what the Compose file's one-shot ``keys`` job provides
(:func:`write_compose_secrets`).
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.runtime.trust.header_signing import REPLAY_TOOL
from services.runtime.trust.keys import ensure_key, private_key_path
from services.tools.deploy.components import TOPICS_ADMIN, Component, bus_components, dns_name
from services.tools.deploy.identity import SESSION_SECRET_KEY, SESSION_SECRET_NAME

NAMESPACE = "lienthong"
SASL_USERNAME = "LIENTHONG_SASL_USERNAME"
SASL_PASSWORD = "LIENTHONG_SASL_PASSWORD"
DATABASE_URL = "LIENTHONG_DATABASE_URL"
DATABASE_SECRET, DATABASE_KEY = "lienthong-db-app", "uri"
KAFKA_CA_SECRET, KAFKA_CA_KEY = "lienthong-cluster-ca-cert", "ca.crt"
TRUST_STORE_SECRET = "lienthong-trust-store"


def kafka_username(principal: str) -> str:
    """A principal's user name in Kubernetes: the name of its Strimzi ``KafkaUser``, a DNS-1123 name."""
    return dns_name(principal)


def kafka_secret(principal: str) -> str:
    return f"lienthong-kafka-{dns_name(principal)}"


def signing_secret(component: Component) -> str:
    return f"lienthong-signing-{component.object_name}"


def signing_key_file(component: Component) -> str:
    """The key of the signing Secret: the file name ``lienthong keys`` gives the producer's key."""
    return private_key_path(Path(), component.producer).name


@dataclass(frozen=True)
class SuppliedSecret:
    """A Secret the manifests read but do not contain. ``keys`` None: mounted whole, any keys."""

    name: str
    keys: frozenset[str] | None
    by: str


def supplied_secrets() -> dict[str, SuppliedSecret]:
    """Every Secret the rendered manifests may reference without containing it."""
    by_keys = "lienthong keys k8s-secrets"
    supplied = [
        SuppliedSecret(
            DATABASE_SECRET, frozenset({DATABASE_KEY}), "CloudNativePG, or you (external database)"
        ),
        SuppliedSecret(KAFKA_CA_SECRET, frozenset({KAFKA_CA_KEY}), "Strimzi, or you (another Kafka cluster)"),
        SuppliedSecret(TRUST_STORE_SECRET, None, by_keys),
        SuppliedSecret(SESSION_SECRET_NAME, frozenset({SESSION_SECRET_KEY}), by_keys),
    ]
    for principal in [*(c.principal for c in bus_components()), TOPICS_ADMIN]:
        supplied.append(
            SuppliedSecret(kafka_secret(principal), frozenset({SASL_USERNAME, SASL_PASSWORD}), by_keys)
        )
    for component in bus_components():
        supplied.append(
            SuppliedSecret(signing_secret(component), frozenset({signing_key_file(component)}), by_keys)
        )
    return {s.name: s for s in supplied}


def _secret(name: str, data: dict[str, bytes], *, string: bool = False) -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/part-of": "lienthong"},
        },
        "type": "Opaque",
    }
    if string:
        document["stringData"] = {k: v.decode() for k, v in data.items()}
    else:
        document["data"] = {k: base64.b64encode(v).decode() for k, v in data.items()}
    return document


def _kept_password(path: Path, key: str) -> str | None:
    """The password a Secret written earlier holds, so that writing again does not change it."""
    if not path.is_file():
        return None
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    value = (document.get("stringData") or {}).get(key)
    return str(value) if value else None


def k8s_secret_documents(out: Path, private_dir: Path, trust_store: Path) -> dict[str, dict[str, Any]]:
    """The Secrets ``lienthong keys`` supplies, by file name under ``out``: a signing key per producer
    (made, and trusted, when it has none in ``private_dir``), the trust store, and a Kafka principal
    per process with a random password (kept from an earlier run's file in ``out``)."""
    documents: dict[str, dict[str, Any]] = {}
    for component in bus_components():
        ensure_key(component.producer, private_dir, trust_store)
        key = private_key_path(private_dir, component.producer).read_bytes()
        documents[f"{signing_secret(component)}.yaml"] = _secret(
            signing_secret(component), {signing_key_file(component): key}
        )
    ensure_key(REPLAY_TOOL, private_dir, trust_store)  # trusted; no pod holds its private key
    trusted = {p.name: p.read_bytes() for p in sorted(trust_store.glob("*.json"))}
    documents[f"{TRUST_STORE_SECRET}.yaml"] = _secret(TRUST_STORE_SECRET, trusted)
    session = _kept_password(
        out / f"{SESSION_SECRET_NAME}.yaml", SESSION_SECRET_KEY
    ) or secrets.token_urlsafe(32)
    documents[f"{SESSION_SECRET_NAME}.yaml"] = _secret(
        SESSION_SECRET_NAME, {SESSION_SECRET_KEY: session.encode()}, string=True
    )
    for principal in [*(c.principal for c in bus_components()), TOPICS_ADMIN]:
        name = kafka_secret(principal)
        password = _kept_password(out / f"{name}.yaml", SASL_PASSWORD) or secrets.token_urlsafe(32)
        values = {SASL_USERNAME: kafka_username(principal).encode(), SASL_PASSWORD: password.encode()}
        documents[f"{name}.yaml"] = _secret(name, values, string=True)
    return documents


def write_k8s_secrets(out: Path, private_dir: Path, trust_store: Path) -> list[Path]:
    """Write :func:`k8s_secret_documents` and a kustomization listing them (``kubectl apply -k out``);
    each file is readable by its owner only. The paths written."""
    documents = k8s_secret_documents(out, private_dir, trust_store)
    out.mkdir(parents=True, exist_ok=True)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACE,
        "resources": sorted(documents),
    }
    written = []
    for name, document in {**documents, "kustomization.yaml": kustomization}.items():
        written.append(_write_private(out / name, yaml.safe_dump(document, sort_keys=False)))
    return written


def _write_private(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    os.chmod(path, 0o600)
    return path


# --- Docker Compose: what the one-shot `keys` job writes into the shared secrets volume ---------------

COMPOSE_DATABASE_USER = "lienthong"
COMPOSE_DATABASE_HOST = "postgres:5432"


def compose_env_file(name: str) -> str:
    """A process's credentials file in the secrets volume (read by :mod:`services.tools.deploy.envfile`)."""
    return f"env/{name}.env"


def _env_values(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def write_compose_secrets(out: Path) -> list[Path]:
    """Fill the Compose secrets volume ``out`` (kept across runs: nothing already there changes):
    ``signing/<producer>.key.json`` and ``trust-store/``; ``postgres.password``; ``kafka/users`` (one
    ``principal password`` line each, for the broker's setup); and ``env/<process>.env`` with each
    process's ``LIENTHONG_SASL_*`` and ``LIENTHONG_DATABASE_URL``."""
    written: list[Path] = []
    for component in bus_components():
        ensure_key(component.producer, out / "signing", out / "trust-store")
    ensure_key(REPLAY_TOOL, out / "signing", out / "trust-store")  # for `lienthong dlq replay`
    _kept_file(out / SESSION_SECRET_KEY, 0o600)  # the tracker's session cookies
    database_password = _kept_file(out / "postgres.password", 0o644)
    database_url = f"postgresql://{COMPOSE_DATABASE_USER}:{database_password}@{COMPOSE_DATABASE_HOST}/{COMPOSE_DATABASE_USER}"
    users: dict[str, str] = {}
    env_by_process: dict[str, dict[str, str]] = {}
    for principal in [*(c.principal for c in bus_components()), TOPICS_ADMIN]:
        env_path = out / compose_env_file(dns_name(principal))
        password = _env_values(env_path).get(SASL_PASSWORD) or secrets.token_urlsafe(32)
        users[principal] = password
        env_by_process[dns_name(principal)] = {SASL_USERNAME: principal, SASL_PASSWORD: password}
    for component in bus_components():
        env_by_process[component.object_name][DATABASE_URL] = database_url
    env_by_process["migrate"] = {DATABASE_URL: database_url}
    (out / "env").mkdir(parents=True, exist_ok=True)
    for name, values in env_by_process.items():
        text = "".join(f"{key}={value}\n" for key, value in values.items())
        written.append(_write_private(out / compose_env_file(name), text))
    (out / "kafka").mkdir(parents=True, exist_ok=True)
    users_file = out / "kafka" / "users"
    users_file.write_text("".join(f"{p} {pw}\n" for p, pw in users.items()), encoding="utf-8")
    os.chmod(users_file, 0o644)  # read by the broker's setup job, which runs as another user
    written += [users_file, out / "postgres.password", out / SESSION_SECRET_KEY]
    return written


def _kept_file(path: Path, mode: int) -> str:
    """The secret in ``path``, drawn and written there (with ``mode``) on first use."""
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    value = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n", encoding="utf-8")
    os.chmod(path, mode)
    return value

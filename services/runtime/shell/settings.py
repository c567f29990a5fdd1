"""Settings every service and connector shares, read from the environment (``LIENTHONG_*``)."""

from __future__ import annotations

import ssl
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from faststream.security import BaseSecurity


class KafkaSettings(BaseSettings):
    """How to reach Kafka. ``KAFKA_BOOTSTRAP_SERVERS`` is honoured as the usual name."""

    model_config = SettingsConfigDict(env_prefix="LIENTHONG_", extra="ignore", populate_by_name=True)

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices(
            "KAFKA_BOOTSTRAP_SERVERS", "LIENTHONG_BOOTSTRAP_SERVERS", "bootstrap_servers"
        ),
    )
    topic_prefix: str = Field(default="", description="Prepended to every topic name (isolates tests).")
    linger_ms: int = Field(
        default=1,
        description="Producer batching delay. Every hop pays it twice (send, then the ack the outbox waits"
        " for); the outbox relay already sends its backlog in one go, so a longer linger buys little.",
    )
    local_stack: bool = Field(
        default=False,
        description="This process runs in the local stack (lienthong run, the tests), where topics kept"
        " in one copy are expected; elsewhere a service warns at start about each such topic"
        " (services.runtime.shell.replication).",
    )
    # Access to a secured cluster (see client_security_options); the local broker needs none of these.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How clients talk to Kafka; SASL_SSL for a real cluster."
    )
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(default="SCRAM-SHA-512")
    sasl_username: str | None = Field(default=None, description="This service's principal.")
    sasl_password: SecretStr | None = Field(default=None)
    ssl_cafile: Path | None = Field(
        default=None, description="CA bundle that signed the brokers' certificates."
    )
    ssl_certfile: Path | None = Field(default=None, description="Client certificate (mutual TLS).")
    ssl_keyfile: Path | None = Field(default=None, description="Client certificate's key (mutual TLS).")


class ServiceSettings(KafkaSettings):
    """What every service process also needs: where its store lives, its port, the catalog."""

    data_dir: Path = Field(default=Path("var"), description="Where services keep their SQLite stores.")
    host: str = Field(default="127.0.0.1")
    port: int = Field(default=8000)
    catalog_path: Path | None = Field(
        default=None, description="Procedure catalog YAML; the shipped one if unset."
    )
    outbox_ack_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest wait for Kafka to acknowledge one batch of the outbox; past it the relay"
        " starts over with a new producer.",
    )


class SigningSettings(BaseSettings):
    """Event signing (see :mod:`services.runtime.trust.signing`): ``LIENTHONG_SIGNING_KEY`` is this process's
    private key file, ``LIENTHONG_TRUST_STORE`` the directory of trusted public keys. The local stack
    always sets both. A service that emits events refuses to start without its key, one that reads
    events without the trust store (:mod:`services.runtime.trust.startup`), unless
    ``LIENTHONG_INSECURE_DEV`` is on. ``LIENTHONG_MAX_EVENT_AGE`` is the age window of a consumer that
    verifies (:mod:`services.runtime.trust.header_signing`)."""

    model_config = SettingsConfigDict(env_prefix="LIENTHONG_", extra="ignore")

    signing_key: Path | None = Field(default=None, description="This producer's private key file.")
    trust_store: Path | None = Field(default=None, description="Directory of trusted public keys.")
    insecure_dev: bool = Field(
        default=False,
        description="Development only: let a service start without its signing key or trust store (it"
        " then emits unsigned events or verifies nothing, and warns at start). Never in a deployment.",
    )
    max_event_age: timedelta = Field(
        default=timedelta(days=7),
        gt=timedelta(0),
        description="Events older than this (by their signed occurred_at) are dead-lettered unless an"
        " operator replays them (lienthong dlq replay, the supervision page); an ISO 8601 duration"
        " (P7D, PT12H)."
        " A consumer stopped longer than this leaves its backlog to be replayed.",
    )


def _ssl_context(settings: KafkaSettings) -> ssl.SSLContext | None:
    if not settings.security_protocol.endswith("SSL"):
        return None
    context = ssl.create_default_context(cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None)
    if settings.ssl_certfile is not None:
        context.load_cert_chain(
            str(settings.ssl_certfile), str(settings.ssl_keyfile) if settings.ssl_keyfile else None
        )
    return context


def _credentials(settings: KafkaSettings) -> tuple[str, str]:
    if settings.sasl_username is None or settings.sasl_password is None:
        raise ValueError(
            f"{settings.security_protocol} needs LIENTHONG_SASL_USERNAME and LIENTHONG_SASL_PASSWORD"
        )
    return settings.sasl_username, settings.sasl_password.get_secret_value()


def client_security_options(settings: KafkaSettings) -> dict[str, Any]:
    """The keyword arguments that give an aiokafka client (producer, consumer, admin) access to the
    cluster the settings describe: nothing for PLAINTEXT, TLS and/or SASL otherwise."""
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    context = _ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.security_protocol.startswith("SASL"):
        username, password = _credentials(settings)
        options |= {
            "sasl_mechanism": settings.sasl_mechanism,
            "sasl_plain_username": username,
            "sasl_plain_password": password,
        }
    return options


def faststream_security(settings: KafkaSettings) -> BaseSecurity | None:
    """The same access for a FastStream ``KafkaBroker(security=...)``; None for PLAINTEXT."""
    from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

    context = _ssl_context(settings)
    if not settings.security_protocol.startswith("SASL"):
        return BaseSecurity(ssl_context=context) if context is not None else None
    username, password = _credentials(settings)
    kind = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext}
    return kind[settings.sasl_mechanism](username, password, ssl_context=context, use_ssl=context is not None)

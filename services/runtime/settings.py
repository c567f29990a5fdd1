"""Settings every service and connector shares, read from the environment (``LIENTHONG_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    linger_ms: int = Field(default=5, description="Producer batching delay; a few ms costs little latency.")


class ServiceSettings(KafkaSettings):
    """What every service process also needs: where its store lives, its port, the catalog."""

    data_dir: Path = Field(default=Path("var"), description="Where services keep their SQLite stores.")
    host: str = Field(default="127.0.0.1")
    port: int = Field(default=8000)
    catalog_path: Path | None = Field(
        default=None, description="Procedure catalog YAML; the shipped one if unset."
    )

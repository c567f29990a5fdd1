"""A connector process's settings, each declared once: the host's (polls, retry tiers, circuit breaker),
with the blip retry's nested in it, and the process's own (which agency, which port) around them.

Every field is read from ``LIENTHONG_*`` under the name it has always had (``LIENTHONG_POLL_INTERVAL_S``,
``LIENTHONG_RETRY_ATTEMPTS``, ``LIENTHONG_CALL_TIMEOUT_S``…): nesting the models changes where a field
is declared, not how a deployment sets it.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.agencies import Agency
from schemas.topics import RETRY_TIERS, RetryTier
from services.runtime.failures.blip_retry import BlipRetry
from services.runtime.shell.settings import ServiceSettings


def tiers_with_delays(delays_s: tuple[float, ...]) -> tuple[RetryTier, ...]:
    """The registry's tiers (their topics) with other delays, e.g. seconds in tests."""
    if len(delays_s) != len(RETRY_TIERS):
        raise ValueError(f"give one delay per retry tier ({', '.join(t.name for t in RETRY_TIERS)})")
    return tuple(
        RetryTier(name=t.name, delay=timedelta(seconds=d)) for t, d in zip(RETRY_TIERS, delays_s, strict=True)
    )


class HostSettings(BaseSettings):
    """How the connector host treats one agency: polling pending jobs, the delayed retry tiers, the
    circuit breaker, and (nested) the in-process retry of blips."""

    model_config = SettingsConfigDict(env_prefix="LIENTHONG_", extra="ignore", frozen=True)

    blip_retry: BlipRetry = Field(default_factory=BlipRetry)
    poll_interval_s: float = Field(
        default=0.5,
        description="The longest wait between two polls of a pending job: the first poll comes after"
        " an eighth of it, and each wait doubles up to it.",
    )
    retry_delays_s: tuple[float, ...] = Field(
        default=tuple(t.delay.total_seconds() for t in RETRY_TIERS),
        description="Delay of each retry tier (the 10s, 1m and 10m topics), e.g. [10, 60, 600].",
    )
    circuit_threshold: int = Field(
        default=5, description="Transient failures in a row that open the circuit."
    )
    circuit_cooldown_s: float = Field(default=10.0, description="How long an open circuit stays open.")
    # A pending job whose polls keep failing: waits from poll_retry_s, doubling up to poll_retry_max_s,
    # and after poll_failure_budget failures in a row the handoff is dead-lettered (stuck, alerting).
    poll_failure_budget: int = Field(
        default=10,
        ge=1,
        description="Failed polls in a row after which a pending job's handoff is dead-lettered (stuck).",
    )
    poll_retry_s: float = Field(
        default=5.0, gt=0, description="Wait after a failed poll; it doubles with each failure in a row."
    )
    poll_retry_max_s: float = Field(default=300.0, gt=0, description="Longest wait after a failed poll.")

    @field_validator("retry_delays_s")
    @classmethod
    def _one_delay_per_tier(cls, delays_s: tuple[float, ...]) -> tuple[float, ...]:
        tiers_with_delays(delays_s)
        return delays_s

    @property
    def retry_tiers(self) -> tuple[RetryTier, ...]:
        """The delay tiers, in the order a failing handoff goes through them."""
        return tiers_with_delays(self.retry_delays_s)


class ConnectorSettings(ServiceSettings):
    agency: Agency = Field(default=Agency.LAND)
    port: int = Field(default=8100)
    connector_host: HostSettings = Field(default_factory=HostSettings)

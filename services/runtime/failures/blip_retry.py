"""The in-process retry for brief blips of an agency system, used around every agency call.

tenacity is entered only after a first failure: wrapping every call costs more than the rest of
the call's bookkeeping even when nothing fails (docs/performance.md), and almost every call
succeeds the first time. Longer outages are not retried here
(that would block the partition): they go to the delayed retry tiers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from connectors.errors import AgencyUnavailable
from services.runtime.failures.table import classify_agency_call

T = TypeVar("T")


class BlipRetry(BaseSettings):
    """The blip retry's policy, from ``LIENTHONG_RETRY_*`` (and ``LIENTHONG_CALL_TIMEOUT_S``)."""

    model_config = SettingsConfigDict(
        env_prefix="LIENTHONG_RETRY_", extra="ignore", frozen=True, populate_by_name=True
    )

    attempts: int = Field(default=3, ge=1, description="In-process attempts for a blip, the first included.")
    within_s: float = Field(default=3.0, description="In-process retries never take longer than this.")
    first_wait_s: float = Field(default=0.1, description="Wait before the first retry; it then grows.")
    max_wait_s: float = Field(default=1.0, description="Longest wait between two retries.")
    call_timeout_s: float = Field(
        default=10.0,
        validation_alias=AliasChoices("LIENTHONG_CALL_TIMEOUT_S", "call_timeout_s"),
        description="Longest wait for one agency call; a slow agency counts as unavailable.",
    )


async def _timed(call: Callable[[], Awaitable[T]], timeout_s: float, agency: str) -> T:
    try:
        async with asyncio.timeout(timeout_s):
            return await call()
    except TimeoutError:
        raise AgencyUnavailable(f"no answer within {timeout_s:g} s", agency=agency) from None


def _retried(error: BaseException) -> bool:
    return classify_agency_call(error).retried_in_process


async def call_with_blip_retries(
    call: Callable[[], Awaitable[T]],
    policy: BlipRetry,
    *,
    agency: str = "",
    on_retry: Callable[[], None] | None = None,
) -> tuple[T, int]:
    """``call()`` with a timeout, retried while its failure's row of the failure table says so (a
    transient one); returns (result, attempts)."""
    try:
        return await _timed(call, policy.call_timeout_s, agency), 1
    except Exception as error:
        if policy.attempts <= 1 or not _retried(error):
            raise
    attempts = 1
    await asyncio.sleep(policy.first_wait_s)
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts - 1) | stop_after_delay(policy.within_s),
        wait=wait_random_exponential(multiplier=policy.first_wait_s, max=policy.max_wait_s),
        retry=retry_if_exception(_retried),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            attempts += 1
            if on_retry is not None:
                on_retry()
            return await _timed(call, policy.call_timeout_s, agency), attempts
    raise AssertionError("unreachable: tenacity re-raises the last error")

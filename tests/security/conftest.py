"""One stack for the security tests that need the whole bus (signed events, the handoff log)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest

from schemas.agencies import Agency
from services.stack.stack import DEFAULT_AGENCIES, LocalStack, StackPorts
from services.stack.traffic import Traffic


@pytest.fixture(scope="package")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    prefix = f"secure{int(time.time() * 1000) % 10**8}."
    with LocalStack(
        kafka_bootstrap,
        tmp_path_factory.mktemp("secure"),
        topic_prefix=prefix,
        ports=StackPorts.free(DEFAULT_AGENCIES),
    ) as running:
        yield running


@pytest.fixture
async def traffic(stack: LocalStack) -> AsyncIterator[Traffic]:
    generator = Traffic(
        stack.intake_url,
        stack.tracker_url,
        stack.sandbox_url(Agency.LAND),
        stack.sandbox_url(Agency.TAX),
        seed=int(time.time()),
    )
    yield generator
    await generator.aclose()

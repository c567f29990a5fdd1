"""One stack for the security tests that need the whole bus (signed events, the handoff log)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from services.tools.stack.stack import LocalStack
from services.tools.stack.traffic import Traffic
from tests.stack_helpers import running_stack, sample_traffic


@pytest.fixture(scope="package")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(kafka_bootstrap, tmp_path_factory, "secure") as running:
        yield running


@pytest.fixture
async def traffic(stack: LocalStack) -> AsyncIterator[Traffic]:
    async with sample_traffic(stack) as generator:
        yield generator

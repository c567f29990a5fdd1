"""Every sandbox app these tests build in process is given the tests' admin token (its fault
endpoints answer only with it; :func:`tests.sandboxes.helpers.asgi_client` sends it)."""

from __future__ import annotations

import pytest

from connectors.sandbox_kit.admin import ADMIN_TOKEN_ENV
from tests.sandboxes.helpers import TEST_ADMIN_TOKEN


@pytest.fixture(autouse=True)
def sandbox_admin_token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(ADMIN_TOKEN_ENV, TEST_ADMIN_TOKEN)
    return TEST_ADMIN_TOKEN

"""The store contract (``store_contract.py``) bound to each backend, three lines each."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.runtime.storage.postgres import PostgresLocation
from tests.storage.store_contract import StoreContract


class _SqliteFiles:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def location(self, name: str) -> Path:
        return self.folder / f"{name}.db"


class _PostgresSchemas:
    def __init__(self, url: str) -> None:
        self.url = url

    def location(self, name: str) -> PostgresLocation:
        return PostgresLocation(self.url, name)


class TestOnSqlite(StoreContract):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> _SqliteFiles:
        return _SqliteFiles(tmp_path)


@pytest.mark.postgres
class TestOnPostgres(StoreContract):
    @pytest.fixture
    def backend(self, fresh_database_url: str) -> _PostgresSchemas:
        return _PostgresSchemas(fresh_database_url)

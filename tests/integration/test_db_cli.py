"""``lienthong db migrate`` and ``lienthong db status`` on a real PostgreSQL database, and the services'
stores refusing a schema they were not built for."""

from __future__ import annotations

import re

import psycopg
import pytest
from typer.testing import CliRunner

from schemas.agencies import Agency
from services.intake.store import IntakeStore
from services.router.store import RouterStore
from services.runtime.storage.database import SchemaMismatch
from services.runtime.storage.postgres import PostgresLocation
from services.tools.cli.main import app

SCHEMAS = {"intake", "router", "tracker", *(f"connector_{agency.value}" for agency in Agency)}


def lienthong(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"LIENTHONG_DATABASE_URL": "", **(env or {})})
    return result.exit_code, result.output


def schemas_in(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT schema_name FROM information_schema.schemata").fetchall()
    return {row[0] for row in rows}


def version_of(url: str, schema: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f'SELECT max(version) FROM "{schema}".schema_version').fetchone()
    assert row is not None
    return int(row[0])


def test_migrate_creates_every_schema_and_status_passes_after_only(fresh_database_url: str) -> None:
    code, output = lienthong("db", "status", "--database-url", fresh_database_url)
    assert code == 1, output
    assert output.count("behind: run `lienthong db migrate`") == len(SCHEMAS)
    assert not SCHEMAS & schemas_in(fresh_database_url)

    code, output = lienthong("db", "migrate", "--database-url", fresh_database_url)
    assert code == 0, output
    assert schemas_in(fresh_database_url) >= SCHEMAS
    for schema in SCHEMAS:
        assert re.search(rf"^\s+{schema}\s+version 0 → [1-9][0-9]*$", output, re.M), output

    # the setting is the default, and a second run changes nothing
    code, again = lienthong("db", "migrate", env={"LIENTHONG_DATABASE_URL": fresh_database_url})
    assert code == 0, again
    assert again.count("(up to date)") == len(SCHEMAS)
    assert "0 migration(s) applied" in again

    code, output = lienthong("db", "status", env={"LIENTHONG_DATABASE_URL": fresh_database_url})
    assert code == 0, output
    assert output.count(": ok") == len(SCHEMAS)


def test_a_service_store_refuses_an_unmigrated_schema_naming_the_command(fresh_database_url: str) -> None:
    for store, schema in ((RouterStore, "router"), (IntakeStore, "intake")):
        with pytest.raises(SchemaMismatch, match="lienthong db migrate"):
            store(PostgresLocation(fresh_database_url, schema))
    lienthong("db", "migrate", "--database-url", fresh_database_url)
    opened = RouterStore(PostgresLocation(fresh_database_url, "router"))  # migrated: it opens
    opened.conn.close()


def test_a_schema_newer_than_this_release_is_refused(fresh_database_url: str) -> None:
    assert lienthong("db", "migrate", "--database-url", fresh_database_url)[0] == 0
    known = version_of(fresh_database_url, "router")
    with psycopg.connect(fresh_database_url) as conn:  # what a later release's migration leaves
        conn.execute(
            "INSERT INTO router.schema_version (version, applied_at) VALUES (%s, 'later')", (known + 1,)
        )

    code, output = lienthong("db", "status", "--database-url", fresh_database_url)
    assert code == 1
    assert re.search(rf"^\s+router\s+version {known + 1}, this release needs {known}: newer", output, re.M)

    code, output = lienthong("db", "migrate", "--database-url", fresh_database_url)
    assert code == 1
    assert "Refused" in output and "'router'" in output and "newer than this release knows" in output
    assert version_of(fresh_database_url, "router") == known + 1

    with pytest.raises(SchemaMismatch, match="newer than this release knows"):
        RouterStore(PostgresLocation(fresh_database_url, "router"))


def test_without_a_database_the_commands_say_sqlite_needs_none() -> None:
    for command in ("migrate", "status"):
        code, output = lienthong("db", command)
        assert code == 2
        assert "--database-url" in output and "LIENTHONG_DATABASE_URL" in output
        assert "SQLite" in output and "migrates itself" in output

"""The PostgreSQL the tests run against: a real server that keeps what was committed, a fresh empty
database per test, and a local server that really stops (or is killed) when told to."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from services.tools.localkafka.process import pid_alive, port_open
from services.tools.localpg.server import HOST, LocalPostgres, PostgresBinaries, server_folder

pytestmark = pytest.mark.postgres

HOLDER = "Văn phòng đăng ký đất đai"  # not ASCII: the text must come back as it went in


def wait_until(condition: Callable[[], bool], within_s: float, what: str) -> None:
    """Polls ``condition`` until it holds; fails the test if it does not within ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {within_s} s")


@pytest.fixture
def own_server(postgres_binaries: PostgresBinaries, tmp_path: Path) -> Iterator[LocalPostgres]:
    """A local server of this test's own (not the run's shared one), started, and stopped at the end."""
    with server_folder(tmp_path / "postgres") as folder:
        server = LocalPostgres(folder, binaries=postgres_binaries)
        server.start()
        try:
            yield server
        finally:
            server.stop()


def test_a_committed_row_is_read_in_another_connection(fresh_database_url: str) -> None:
    with psycopg.connect(fresh_database_url) as writer, psycopg.connect(fresh_database_url) as reader:
        writer_pid = writer.execute("SELECT pg_backend_pid()").fetchone()
        assert writer_pid != reader.execute("SELECT pg_backend_pid()").fetchone()  # two sessions
        writer.execute("CREATE TABLE dossiers (dossier_id text PRIMARY KEY, holder text NOT NULL)")
        writer.commit()

        writer.execute("INSERT INTO dossiers VALUES (%s, %s)", ("HS-0001", HOLDER))
        assert reader.execute("SELECT count(*) FROM dossiers").fetchone() == (0,)  # not committed yet
        reader.rollback()
        writer.commit()

        row = reader.execute("SELECT holder FROM dossiers WHERE dossier_id = %s", ("HS-0001",)).fetchone()
        assert row == (HOLDER,)


def test_each_fresh_database_is_another_empty_one(
    fresh_database_url: str, fresh_database_factory: Callable[[], str], postgres_url: str
) -> None:
    with psycopg.connect(fresh_database_url, autocommit=True) as first:
        first.execute("CREATE TABLE dossiers (dossier_id text PRIMARY KEY)")
        first.execute("INSERT INTO dossiers VALUES ('HS-0001')")
        first_name = first.execute("SELECT current_database()").fetchone()

    with psycopg.connect(fresh_database_factory(), autocommit=True) as second:
        second_name = second.execute("SELECT current_database()").fetchone()
        tables = second.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()

    with psycopg.connect(postgres_url, autocommit=True) as server:
        server_name = server.execute("SELECT current_database()").fetchone()
    assert len({first_name, second_name, server_name}) == 3
    assert tables == (0,)


def test_stopping_the_server_ends_it_and_closes_its_port(own_server: LocalPostgres) -> None:
    postmaster, port = own_server.pid, own_server.port
    assert postmaster is not None and port_open(HOST, port)
    client = psycopg.connect(own_server.url)  # an open session must not hold the shutdown up
    backend = client.execute("SELECT pg_backend_pid()").fetchone()
    assert backend is not None

    own_server.stop(timeout=30)

    assert not own_server.running
    assert not pid_alive(postmaster), "the postmaster still runs"
    assert not pid_alive(backend[0]), "the client's backend still runs"
    assert not port_open(HOST, port), f"{HOST}:{port} still accepts connections"
    assert not (own_server.socket_dir / f".s.PGSQL.{port}").exists()
    with pytest.raises(psycopg.OperationalError):
        client.execute("SELECT 1")
    client.close()


def test_a_server_that_does_not_shut_down_in_time_is_killed(own_server: LocalPostgres) -> None:
    postmaster, port = own_server.pid, own_server.port
    assert postmaster is not None
    os.kill(postmaster, signal.SIGSTOP)  # frozen: it cannot act on pg_ctl's shutdown request

    started = time.monotonic()
    own_server.stop(timeout=2)
    took = time.monotonic() - started

    assert not pid_alive(postmaster), "the frozen postmaster was not killed"
    wait_until(lambda: not port_open(HOST, port), 10, f"{HOST}:{port} closing")
    assert took < 20, f"stop(timeout=2) took {took:.1f} s"


def test_a_committed_row_survives_a_crash_and_a_restart(own_server: LocalPostgres) -> None:
    with psycopg.connect(own_server.url, autocommit=True) as connection:
        connection.execute("CREATE TABLE dossiers (dossier_id text PRIMARY KEY, holder text NOT NULL)")
        connection.execute("INSERT INTO dossiers VALUES (%s, %s)", ("HS-0001", HOLDER))
    port = own_server.port

    own_server.kill()  # SIGKILL: no shutdown checkpoint, the row is only in the WAL
    wait_until(lambda: not port_open(HOST, port), 10, f"{HOST}:{port} closing after the kill")
    own_server.start()

    with psycopg.connect(own_server.url) as connection:
        assert connection.execute("SELECT holder FROM dossiers").fetchall() == [(HOLDER,)]

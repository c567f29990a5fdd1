"""PostgreSQL run from the machine's own server programs (no Docker), for the tests and the local stack.

``LocalPostgres`` makes a cluster in a folder once (``initdb``), starts ``postgres`` on 127.0.0.1 and on a
unix socket inside that folder, waits until it answers a query, and stops it with ``pg_ctl stop -m fast``
(SIGKILL if it has not ended in time). Re-starting on the same folder keeps its databases, which is what
a restart or crash test needs. PostgreSQL refuses to run as root: as root its programs run as the
unprivileged ``postgres`` system account, which then owns the cluster's files.

The cluster is a private, throw-away server: anyone on this machine who can reach 127.0.0.1 or the
socket may connect as any role without a password (``trust``). Never point it at data that matters.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from services.tools.localkafka.process import ChildServer, child_preexec, free_port, port_open

HOST = "127.0.0.1"  # never "localhost": it may resolve to ::1 first
PACKAGE = "postgresql"  # Debian's package of the server programs
DEBIAN_BINDIRS = "/usr/lib/postgresql/*/bin"  # Debian keeps them off PATH, one folder per major version
PROGRAMS = ("initdb", "pg_ctl", "postgres")
_SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes, the last one NUL
_PORT_TAKEN = ("could not bind", "Address already in use")


class PostgresError(RuntimeError):
    """The local PostgreSQL server could not be found, started, reached or stopped."""


class PostgresNotInstalled(PostgresError):
    """PostgreSQL's server programs are not on this machine (install the ``postgresql`` package)."""


# --- the server programs ------------------------------------------------------------------------


@dataclass(frozen=True)
class PostgresBinaries:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``, and the version they are."""

    bindir: Path
    version: str  # what `postgres --version` reports, e.g. "15.14"

    @property
    def initdb(self) -> str:
        return str(self.bindir / "initdb")

    @property
    def pg_ctl(self) -> str:
        return str(self.bindir / "pg_ctl")

    @property
    def postgres(self) -> str:
        return str(self.bindir / "postgres")


def _complete(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) and (bindir / name).is_file() for name in PROGRAMS)


def _major_minor(bindir: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in bindir.parent.name.split("."))
    except ValueError:
        return (0,)


def _candidate_bindirs() -> Iterator[Path]:
    """Where the server programs may be, in order: wherever ``pg_ctl`` on PATH really lives, what
    ``pg_config --bindir`` says, then Debian's folders, the newest major version first."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        yield Path(on_path).resolve().parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
            )
            if done.returncode == 0 and done.stdout.strip():
                yield Path(done.stdout.strip())
    yield from sorted((Path(found) for found in glob.glob(DEBIAN_BINDIRS)), key=_major_minor, reverse=True)


@functools.cache
def find_binaries() -> PostgresBinaries:
    """The PostgreSQL server programs of this machine; :class:`PostgresNotInstalled` says how to get
    them when they are missing (a found result is kept for the life of the process)."""
    for bindir in _candidate_bindirs():
        if not _complete(bindir):
            continue
        done = subprocess.run(
            [str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
        match = re.search(r"\(PostgreSQL\)\s+(\S+)", done.stdout)
        return PostgresBinaries(bindir, match.group(1) if match else done.stdout.strip() or "unknown")
    raise PostgresNotInstalled(
        f"PostgreSQL's server programs ({', '.join(PROGRAMS)}) were not found: not on PATH, not in "
        f"`pg_config --bindir`, not in {DEBIAN_BINDIRS}. Install the `{PACKAGE}` package "
        f"(apt-get install {PACKAGE}); .ci/run installs it."
    )


# --- who runs them ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Account:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def _server_account(server_user: str) -> _Account | None:
    """The account the server programs switch to: ``server_user`` when this process is root (which
    PostgreSQL refuses to run as), else None (they run as this process's own user)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(server_user)
    except KeyError:
        raise PostgresError(
            f"PostgreSQL refuses to run as root, and there is no `{server_user}` system account to run "
            f"it as: install the `{PACKAGE}` package (it creates the account) or run as another user."
        ) from None
    if entry.pw_uid == 0:
        raise PostgresError(f"The account `{server_user}` is root, which PostgreSQL refuses to run as.")
    groups = tuple(os.getgrouplist(server_user, entry.pw_gid))
    return _Account(server_user, entry.pw_uid, entry.pw_gid, groups)


def _can_traverse(folder: Path, account: _Account) -> bool:
    """Whether ``account`` may enter ``folder`` and each folder above it (ACLs aside)."""
    for each in (folder, *folder.parents):
        mode = each.stat()
        if mode.st_uid == account.uid:
            bit = stat.S_IXUSR
        elif mode.st_gid in account.groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not mode.st_mode & bit:
            return False
    return True


def server_can_reach(folder: Path, server_user: str = "postgres") -> bool:
    """Whether the server programs, run by this process, can enter ``folder`` (always when not root;
    as root they run as ``server_user``, who cannot enter pytest's temporary folders, for one)."""
    account = _server_account(server_user)
    return account is None or _can_traverse(folder.resolve(), account)


@contextmanager
def server_folder(preferred: Path, server_user: str = "postgres") -> Iterator[Path]:
    """A folder for a :class:`LocalPostgres`: ``preferred`` when its programs can reach it, otherwise
    a new private folder in the system's temporary folder, owned by the server's account and removed
    on exit (stop the server before leaving the block)."""
    preferred.mkdir(parents=True, exist_ok=True)
    account = _server_account(server_user)
    if account is None or _can_traverse(preferred.resolve(), account):
        yield preferred
        return
    folder = Path(tempfile.mkdtemp(prefix="lienthong-pg-"))
    try:
        os.chown(folder, account.uid, account.gid)
        if not _can_traverse(folder, account):
            raise PostgresError(
                f"`{account.name}` cannot enter {preferred} nor {folder}: give the server a folder it "
                f"can reach (each folder above it must be searchable by `{account.name}`)."
            )
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- databases on any server --------------------------------------------------------------------


def database_url(server_url: str, name: str) -> str:
    """The address of database ``name`` on the server ``server_url`` points to (a URL for a URL, a
    ``key=value`` string for one), with the same host, port, user and options."""
    if server_url.startswith(("postgresql://", "postgres://")):
        return urlunsplit(urlsplit(server_url)._replace(path="/" + quote(name, safe="")))
    return make_conninfo(server_url, dbname=name)


def create_database(server_url: str, name: str) -> str:
    """Create the empty database ``name`` on the server ``server_url`` points to (connected to the
    database it names) and return the new database's address (see :func:`database_url`)."""
    with psycopg.connect(server_url, autocommit=True) as connection:  # CREATE DATABASE: no transaction
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name`` if it exists, ending the sessions still connected to it."""
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def redacted(url: str) -> str:
    """``url`` without its password, fit for a log line or a test report."""
    if not url.startswith(("postgresql://", "postgres://")):
        return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


# --- the server ---------------------------------------------------------------------------------


class LocalPostgres(ChildServer):
    """One PostgreSQL cluster with its data, socket and log in ``work_dir``.

    ``work_dir/data`` is the cluster (made by the first :meth:`start`, kept by later ones),
    ``work_dir/socket`` holds its unix socket and ``work_dir/postgres.log`` what its programs print.
    The superuser is ``user``; :meth:`start` also creates ``database`` when missing, which :attr:`url`
    names. With ``die_with_parent`` (the default) the kernel kills the server if this Python process
    dies, so no orphan server survives an interrupted test run.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        port: int | None = None,
        user: str = "lienthong",
        database: str = "lienthong",
        max_connections: int = 200,  # every service replica keeps a pool of connections
        settings: Mapping[str, str] | None = None,
        server_user: str = "postgres",
        die_with_parent: bool = True,
        binaries: PostgresBinaries | None = None,
    ) -> None:
        """``settings``: more server settings (``name → value``, as in postgresql.conf), given on the
        command line at every start; ``server_user``: the account its programs run as when this
        process is root; ``binaries``: the server programs (found with :func:`find_binaries` when
        not given)."""
        self.work_dir = work_dir
        self._chosen_port = port is None
        self.port = port or free_port(HOST)
        self.user = user
        self.database = database
        self.max_connections = max_connections
        self.settings = dict(settings or {})
        self.server_user = server_user
        self.die_with_parent = die_with_parent
        self._binaries = binaries
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # -- where things are --

    @property
    def data_dir(self) -> Path:
        return self.work_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.work_dir / "socket"

    @property
    def log_file(self) -> Path:
        return self.work_dir / "postgres.log"

    @property
    def url(self) -> str:
        """``postgresql://USER@127.0.0.1:PORT/DATABASE`` (no password: the cluster trusts local users)."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """The URL of another database on this server."""
        return f"postgresql://{quote(self.user, safe='')}@{HOST}:{self.port}/{quote(database, safe='')}"

    @property
    def binaries(self) -> PostgresBinaries:
        if self._binaries is None:
            self._binaries = find_binaries()
        return self._binaries

    # -- starting --

    def start(self, timeout: float = 60.0) -> str:
        """Make the cluster if there is none yet, start the server, wait until it answers a query and
        has :attr:`database`, and return :attr:`url`. :class:`PostgresError` (with the end of the log)
        if it cannot; the server is then stopped again."""
        if self.running:
            return self.url
        deadline = time.monotonic() + timeout
        account = _server_account(self.server_user)
        try:
            self._prepare(account)
            for attempt in range(3):
                self._launch(account)
                if self._wait_ready(deadline):
                    break
                # The port was free when drawn but taken before the server bound it: draw another.
                if not self._chosen_port or attempt == 2:
                    raise PostgresError(
                        f"PostgreSQL could not listen on {HOST}:{self.port}: the port is taken.\n"
                        f"{self.log_tail()}"
                    )
                self.port = free_port(HOST)
            self._ensure_database()
        except BaseException:
            self.stop()
            raise
        return self.url

    def _prepare(self, account: _Account | None) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if account is not None and not _can_traverse(self.work_dir.resolve(), account):
            raise PostgresError(
                f"PostgreSQL runs as `{account.name}` here (this process is root), who cannot enter "
                f"{self.work_dir}: use a folder it can reach (see server_folder)."
            )
        for folder in (self.data_dir, self.socket_dir):
            folder.mkdir(mode=0o700, exist_ok=True)
            if account is not None:
                os.chown(folder, account.uid, account.gid)
        if (self.data_dir / "PG_VERSION").exists():
            return
        # trust: any local user may connect as any role without a password. Acceptable only because
        # this is a private, throw-away server listening on 127.0.0.1 and a socket in its own folder.
        command = [
            self.binaries.initdb,
            "--pgdata",
            str(self.data_dir),
            "--username",
            self.user,
            "--auth-local=trust",
            "--auth-host=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",  # byte-order sorting, but upper()/lower() that know Vietnamese letters
            "--no-instructions",
        ]
        with self.log_file.open("ab") as log:
            done = subprocess.run(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=300,
                check=False,
                **self._as(account),
            )
        if done.returncode != 0:
            raise PostgresError(
                f"initdb exited with code {done.returncode} making the cluster in {self.data_dir}; "
                f"last lines of {self.log_file}:\n{self.log_tail()}"
            )

    def _server_command(self) -> list[str]:
        settings = {
            "port": str(self.port),
            "listen_addresses": HOST,
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": str(self.max_connections),
        } | self.settings
        command = [self.binaries.postgres, "-D", str(self.data_dir)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        return command

    def _launch(self, account: _Account | None) -> None:
        while port_open(HOST, self.port):
            if not self._chosen_port:
                raise PostgresError(f"Port {self.port} on {HOST} is already in use: stop what holds it.")
            self.port = free_port(HOST)
        socket_path = self.socket_dir / f".s.PGSQL.{self.port}"
        if len(str(socket_path)) > _SOCKET_PATH_MAX:
            raise PostgresError(
                f"The socket path {socket_path} is longer than {_SOCKET_PATH_MAX} bytes, the most a unix "
                "socket's path may have: give the server a shorter folder."
            )
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                self._server_command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own process group, so that a kill also takes the backends it has forked.
                start_new_session=True,
                preexec_fn=child_preexec(die_with_parent=self.die_with_parent),  # runs after setuid
                **self._as(account),
            )

    @staticmethod
    def _as(account: _Account | None) -> dict[str, Any]:
        """:mod:`subprocess` keyword arguments that run a program as ``account``."""
        if account is None:
            return {}
        return {"user": account.uid, "group": account.gid, "extra_groups": list(account.groups)}

    def _wait_ready(self, deadline: float) -> bool:
        """Wait until the server answers a query over TCP: True; False if it exited because its port
        was taken; :class:`PostgresError` if it exited otherwise or the deadline passed."""
        assert self._process is not None
        problem = "no answer yet"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log = self._log_since_launch()
                if any(sign in log for sign in _PORT_TAKEN):
                    self._process = None
                    return False
                raise PostgresError(
                    f"PostgreSQL exited with code {self._process.returncode} while starting; last lines "
                    f"of {self.log_file}:\n{self.log_tail()}"
                )
            try:
                with psycopg.connect(self.url_for("postgres"), connect_timeout=2) as connection:
                    connection.execute("SELECT 1")
                return True
            except psycopg.OperationalError as exc:  # refused, or "the database system is starting up"
                problem = str(exc).strip()
            time.sleep(0.05)
        raise PostgresError(
            f"PostgreSQL did not answer within the deadline ({problem}); last lines of {self.log_file}:\n"
            f"{self.log_tail()}"
        )

    def _ensure_database(self) -> None:
        with psycopg.connect(self.url_for("postgres"), autocommit=True) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if exists is None:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def create_database(self, name: str) -> str:
        """Create the empty database ``name`` on this running server and return its URL."""
        create_database(self.url_for("postgres"), name)
        return self.url_for(name)

    # -- the log --

    def _log_since_launch(self) -> str:
        if not self.log_file.exists():
            return ""
        with self.log_file.open("rb") as log:
            log.seek(self._log_offset)
            return log.read().decode("utf-8", errors="replace")

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the log file (initdb's and the server's output)."""
        if not self.log_file.exists() or not self.log_file.stat().st_size:
            return "(no log output)"
        text = self.log_file.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    # -- stopping --

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (``pg_ctl stop -m fast``: open sessions are ended, committed data is kept),
        then SIGKILL to the server and its backends if it has not ended within ``timeout`` seconds.
        Returns once the postmaster has exited, so its port is closed."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        deadline = time.monotonic() + timeout
        stopped = False
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            stopped = not subprocess.run(
                [
                    self.binaries.pg_ctl,
                    "stop",
                    "--pgdata",
                    str(self.data_dir),
                    "--mode=fast",
                    "--wait",
                    f"--timeout={max(1, int(timeout))}",
                    "--silent",
                ],
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=timeout + 5,
                check=False,
                **self._as(_server_account(self.server_user)),
            ).returncode
        try:
            # pg_ctl returns 0 once the pid file is gone, a moment before the postmaster exits.
            process.wait(timeout=5.0 if stopped else max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._kill_group(process)

    def kill(self) -> None:
        """SIGKILL the server and its backends, as a crash would (what was committed must survive)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            self._kill_group(process)

    @staticmethod
    def _kill_group(process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # its group: started with start_new_session
        process.wait(timeout=10)

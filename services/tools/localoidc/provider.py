"""Keycloak in development mode as one JVM on 127.0.0.1, without Docker: the realms of the given files
imported at first start, an H2 database and the logs in its work directory.

``LocalOidcProvider`` is started and stopped like :class:`services.tools.localkafka.broker.LocalKafkaBroker`:
``start`` (or ``launch`` then ``wait_ready``), ``stop``, ``kill``, a context manager, and a JVM that dies
with the thread that launched it. Its work directory is a Keycloak "home" of its own (Keycloak keeps its
data under its home): the shared distribution's ``lib``, ``conf`` and ``themes`` linked in, ``data``
its own, so restarting on the same directory keeps the realms and their signing keys.

The JVM is started directly (as ``bin/kc.sh`` would start it, including its relaunch after a re-build)
rather than through ``kc.sh``, whose shell would leave the JVM behind if this process died.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from services.tools.localkafka.process import (
    ChildServer,
    child_preexec,
    given_or_free,
    port_open,
)
from services.tools.localoidc.distribution import (
    KeycloakDistribution,
    build_lock,
    is_built,
    mark_built,
    require_java,
    resolve_distribution,
)
from services.tools.localoidc.errors import ProviderError

HOST = "127.0.0.1"  # never "localhost": it may resolve to ::1 first, and the issuer names the host
REALM = "lienthong"
REALM_FILE = Path(__file__).resolve().parents[3] / "deploy" / "oidc" / "lienthong-realm.json"
ADMIN = "admin"
_RELAUNCH = 10  # Keycloak's exit code after it re-built itself: start again, built (as kc.sh does)
# What bin/kc.sh passes to the JVM (Keycloak 26), less the heap, which is the constructor's.
_JVM_OPTIONS = (
    "-XX:MetaspaceSize=96M",
    "-XX:MaxMetaspaceSize=256m",
    "-Dfile.encoding=UTF-8",
    "-Dsun.stdout.encoding=UTF-8",
    "-Dsun.err.encoding=UTF-8",
    "-Dstdout.encoding=UTF-8",
    "-Dstderr.encoding=UTF-8",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.security.egd=file:/dev/urandom",
    "-XX:+UseG1GC",
    "-XX:TieredStopAtLevel=1",  # a test provider starts more often than it runs long: JIT less
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens=java.base/java.security=ALL-UNNAMED",
    "-Duser.language=en",
    "-Duser.country=US",
    "-Djava.util.concurrent.ForkJoinPool.common.threadFactory="
    "io.quarkus.bootstrap.forkjoin.QuarkusForkJoinWorkerThreadFactory",
    "-Djava.util.logging.manager=org.jboss.logmanager.LogManager",
    "-Dpicocli.disable.closures=true",
    "-Dquarkus-log-max-startup-records=10000",
)


class LocalOidcProvider(ChildServer):
    """One Keycloak JVM (``start-dev``) on 127.0.0.1 with its home and data in ``work_dir``.

    ``realm_files``: realm exports imported on the first start (a realm that exists is kept as it is);
    :meth:`issuer` names each realm's issuer. With ``die_with_parent`` (the default) the kernel kills
    the JVM if the launching thread dies, so an interrupted test run leaves no provider behind.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        port: int | None = None,
        management_port: int | None = None,
        realm_files: Sequence[Path] = (REALM_FILE,),
        heap: str = "512m",
        die_with_parent: bool = True,
        distribution: KeycloakDistribution | None = None,
        java: Path | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.port, self.management_port = given_or_free(port, management_port, host=HOST)
        self.realm_files = tuple(realm_files)
        self.heap = heap
        self.die_with_parent = die_with_parent
        self._distribution = distribution
        self._java = java
        self._process: subprocess.Popen[bytes] | None = None
        self._built_flag = False

    # -- where it is ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def issuer(self, realm: str = REALM) -> str:
        """The ``iss`` of the tokens ``realm`` issues (also the base of its discovery document)."""
        return f"{self.base_url}/realms/{realm}"

    def token_endpoint(self, realm: str = REALM) -> str:
        return f"{self.issuer(realm)}/protocol/openid-connect/token"

    @property
    def realms(self) -> list[str]:
        import json

        return [str(json.loads(path.read_text(encoding="utf-8"))["realm"]) for path in self.realm_files]

    @property
    def home(self) -> Path:
        return self.work_dir / "home"

    @property
    def log_file(self) -> Path:
        return self.work_dir / "logs" / "keycloak.log"

    @property
    def admin_password(self) -> str:
        """The master realm's bootstrap admin password (made once per work directory, owner-only)."""
        path = self.work_dir / "admin.secret"
        if not path.exists():
            self.work_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(24), encoding="utf-8")
        return path.read_text(encoding="utf-8").strip()

    @property
    def distribution(self) -> KeycloakDistribution:
        if self._distribution is None:
            self._distribution = resolve_distribution()
        return self._distribution

    @property
    def java(self) -> Path:
        if self._java is None:
            self._java = require_java()
        return self._java

    # -- starting and stopping -----------------------------------------------------------------------

    def prepare(self) -> None:
        """Check the ports and lay out the home: links to the distribution, the realm files to import."""
        for port in (self.port, self.management_port):
            if port_open(HOST, port):
                raise ProviderError(
                    f"Port {port} on {HOST} is already in use: stop what holds it or pick another."
                )
        dist = self.distribution
        self.home.mkdir(parents=True, exist_ok=True)
        for name in ("lib", "conf", "themes", "providers"):
            link = self.home / name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(dist.home / name, target_is_directory=True)
        imports = self.home / "data" / "import"
        if imports.exists():
            shutil.rmtree(imports)
        imports.mkdir(parents=True)
        for path in self.realm_files:
            shutil.copyfile(path, imports / path.name)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)

    def _command(self) -> list[str]:
        home = self.home
        return [
            str(self.java),
            *_JVM_OPTIONS,
            "-Xms64m",
            f"-Xmx{self.heap}",
            *(["-Dkc.config.built=true"] if self._built_flag else []),
            f"-Dkc.home.dir={home}",
            f"-Djboss.server.config.dir={home / 'conf'}",
            "-cp",
            str(self.distribution.run_jar),
            "io.quarkus.bootstrap.runner.QuarkusEntryPoint",
            "start-dev",
            f"--http-host={HOST}",
            f"--http-port={self.port}",
            f"--http-management-port={self.management_port}",
            "--import-realm",
        ]

    def _environment(self) -> dict[str, str]:
        env = {
            key: value for key, value in os.environ.items() if not key.startswith(("KC_", "KEYCLOAK_ADMIN"))
        }
        env["KC_BOOTSTRAP_ADMIN_USERNAME"] = ADMIN
        env["KC_BOOTSTRAP_ADMIN_PASSWORD"] = self.admin_password
        return env

    def launch(self) -> None:
        """Lay out the home and start the JVM, without waiting for it to answer.

        With ``die_with_parent`` the JVM dies with the *thread* that launches it (Linux's parent-death
        signal), and :meth:`wait_ready` may launch it again (after a re-build): call both from a
        thread that lives as long as the provider should.
        """
        if self.running:
            return
        self.prepare()
        self._popen()

    def _popen(self) -> None:
        log = self.log_file.open("ab")
        try:
            self._process = subprocess.Popen(
                self._command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.work_dir,
                env=self._environment(),
                preexec_fn=child_preexec(die_with_parent=self.die_with_parent),
                start_new_session=not self.die_with_parent,
            )
        finally:
            log.close()

    def answers(self, timeout: float = 2.0) -> bool:
        """Whether every imported realm serves its discovery document now."""
        try:
            with httpx.Client(timeout=timeout) as client:
                for realm in self.realms:
                    url = f"{self.issuer(realm)}/.well-known/openid-configuration"
                    if client.get(url).status_code != 200:
                        return False
        except httpx.HTTPError:
            return False
        return True

    def wait_ready(self, timeout: float) -> None:
        """Wait until every realm serves its discovery document; stop the JVM and raise
        :class:`ProviderError` if it exits or is not ready within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is None:
                raise ProviderError("The OIDC provider was not launched.")
            code = self._process.poll()
            if code == _RELAUNCH and not self._built_flag:
                self._built_flag = True  # it re-built itself for these options: start it, built
                self._popen()
                continue
            if code is not None:
                self._process = None
                raise ProviderError(
                    f"Keycloak exited with code {code} while starting; its log ends:\n{self.log_tail()}"
                )
            if port_open(HOST, self.port) and self.answers():
                return
            time.sleep(0.25)
        self.stop()
        raise ProviderError(f"Keycloak did not become ready within {timeout:.0f} s:\n{self.log_tail()}")

    def start(self, timeout: float = 180.0) -> str:
        """Start the provider (building the distribution first if needed) and return the issuer of
        :data:`REALM` once every realm answers."""
        if not self.running:
            ensure_built(self.distribution, self.java)
            self.launch()
            self.wait_ready(timeout)
        return self.issuer()

    def log_tail(self, lines: int = 25) -> str:
        if self.log_file.exists() and self.log_file.stat().st_size:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return "(no log output)"


def ensure_built(dist: KeycloakDistribution, java: Path, timeout: float = 600.0) -> None:
    """Build the distribution for ``start-dev`` once (Quarkus' augmentation, written into its ``lib``),
    by starting a throw-away provider that has no realm: the build ends with Keycloak's relaunch exit
    code, or, on a distribution already built, the throw-away provider answers and is stopped."""
    if is_built(dist):
        return
    import tempfile

    with build_lock(dist):
        if is_built(dist):
            return
        with tempfile.TemporaryDirectory(prefix="keycloak-build-") as scratch:
            builder = LocalOidcProvider(Path(scratch), realm_files=(), distribution=dist, java=java)
            builder.launch()
            process = builder._process
            assert process is not None
            deadline = time.monotonic() + timeout
            try:
                while process.poll() is None and time.monotonic() < deadline:
                    if port_open(HOST, builder.port):
                        break  # already built: it started
                    time.sleep(0.25)
                code = process.poll()
                if code is None and not port_open(HOST, builder.port):
                    raise ProviderError(
                        f"Building Keycloak took more than {timeout:.0f} s:\n{builder.log_tail()}"
                    )
                if code not in (None, _RELAUNCH):
                    raise ProviderError(f"Building Keycloak failed (exit {code}):\n{builder.log_tail()}")
            finally:
                builder.stop()
        mark_built(dist)

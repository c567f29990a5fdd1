"""Finding the Apache Kafka broker's jars: from ``KAFKA_HOME`` or resolved once from Maven Central.

Apache Kafka publishes its broker (``org.apache.kafka:kafka_2.13``) to Maven Central; the pom in
``deploy/kafka/pom.xml`` pins the version and adds the log4j2 binding that Kafka's runtime scope
leaves out. Maven copies the jars into a per-version cache outside the repository, once.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from services.tools.localkafka.errors import BrokerError

_REPO_ROOT = Path(__file__).resolve().parents[3]
POM_PATH = _REPO_ROOT / "deploy" / "kafka" / "pom.xml"
# Marks a completed copy: an interrupted `mvn` run leaves a partial folder that must not be reused.
_COMPLETE_MARKER = ".complete"


@dataclass(frozen=True)
class KafkaDistribution:
    """Where the broker's classes come from."""

    lib_dir: Path
    version: str
    source: str  # "KAFKA_HOME" or "maven"

    @property
    def classpath(self) -> str:
        # The JVM expands a trailing "*" itself; passing it unexpanded keeps the command line short.
        return str(self.lib_dir / "*")


def cache_root() -> Path:
    """The cache for downloaded jars and local broker state (never inside the repository)."""
    explicit = os.environ.get("LIENTHONG_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "lienthong"


def pinned_kafka_version(pom: Path = POM_PATH) -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text(encoding="utf-8"))
    if not match:
        raise BrokerError(f"{pom.name} does not pin <kafka.version>")
    return match.group(1).strip()


def require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise BrokerError(
            "The local Kafka broker needs Java 17 or newer, and no `java` is on PATH: "
            "install a JDK/JRE 17 (Debian: apt-get install openjdk-17-jre-headless)."
        )
    return java


def _require_maven() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            "Resolving Apache Kafka's jars needs Maven, and no `mvn` is on PATH: install it "
            "(Debian: apt-get install maven), or set KAFKA_HOME to an unpacked Apache Kafka 4.x."
        )
    return mvn


def _from_kafka_home(home: Path) -> KafkaDistribution:
    libs = home / "libs"
    jars = sorted(libs.glob("kafka_2.13-*.jar"))
    if not jars:
        raise BrokerError(f"KAFKA_HOME={home} has no libs/kafka_2.13-*.jar: is it an unpacked Apache Kafka?")
    version = jars[0].name.removeprefix("kafka_2.13-").split("-")[0].removesuffix(".jar")
    return KafkaDistribution(lib_dir=libs, version=version, source="KAFKA_HOME")


def resolve_distribution(*, quiet: bool = True) -> KafkaDistribution:
    """The broker's jars: ``KAFKA_HOME`` if set, else the Maven cache (filled on first use)."""
    home = os.environ.get("KAFKA_HOME")
    if home:
        return _from_kafka_home(Path(home))
    version = pinned_kafka_version()
    lib_dir = cache_root() / f"kafka-{version}" / "lib"
    if (lib_dir / _COMPLETE_MARKER).exists():
        return KafkaDistribution(lib_dir=lib_dir, version=version, source="maven")
    mvn = _require_maven()
    if lib_dir.exists():
        shutil.rmtree(lib_dir)
    lib_dir.mkdir(parents=True)
    command = [
        mvn,
        "-B",
        *(["-q"] if quiet else []),
        "-f",
        str(POM_PATH),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={lib_dir}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise BrokerError(f"Maven could not resolve Apache Kafka {version}'s jars:\n{tail}")
    (lib_dir / _COMPLETE_MARKER).touch()
    return KafkaDistribution(lib_dir=lib_dir, version=version, source="maven")

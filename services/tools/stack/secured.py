"""The local stack's broker secured as a deployment's is: SASL/SCRAM, one principal per service, ACLs.

``lienthong run`` starts its broker with :func:`secured_local_broker`: SCRAM-SHA-512 on the client
listener, the super user ``admin`` (the stack's own tools: topics, ACLs, consumer groups, and the
``lienthong`` commands that find the running stack) and one principal per service with the ACLs
:func:`services.tools.localkafka.access.service_acls` declares (``intake``, ``router``, ``tracker``,
``connector-<agency>``). The passwords are drawn on first use and kept in the broker's folder, readable
by their owner only, beside the broker's data: SCRAM credentials are written when the storage is
formatted, so the two are kept, and thrown away, together.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.tools.localkafka.access import service_acls
from services.tools.localkafka.broker import ADMIN, SCRAM, LocalKafkaBroker, create_acls

PASSWORDS_FILE = "sasl-users.json"
ADMIN_SECRET_FILE = "sasl-admin.secret"  # written by LocalKafkaBroker.admin_password
SECURITY_PROTOCOL = "SASL_PLAINTEXT"  # on 127.0.0.1 only; a deployment's cluster speaks SASL_SSL


def read_secret(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip()


@dataclass(frozen=True)
class StackAccess:
    """How the stack's processes reach a secured broker: the super user's password file, for the
    stack's tools, and each service's principal and password."""

    admin_password_file: Path
    passwords: Mapping[str, str] = field(repr=False)
    admin_username: str = ADMIN
    mechanism: str = SCRAM

    def options(self, principal: str | None = None) -> dict[str, Any]:
        """aiokafka keyword arguments for ``principal`` (the super user when None)."""
        username = principal or self.admin_username
        password = self.passwords[principal] if principal else read_secret(self.admin_password_file)
        return {
            "security_protocol": SECURITY_PROTOCOL,
            "sasl_mechanism": self.mechanism,
            "sasl_plain_username": username,
            "sasl_plain_password": password,
        }

    def service_env(self, principal: str) -> dict[str, str]:
        """The settings (:class:`services.runtime.shell.settings.KafkaSettings`) that make a service
        connect as ``principal``."""
        return {
            "LIENTHONG_SECURITY_PROTOCOL": SECURITY_PROTOCOL,
            "LIENTHONG_SASL_MECHANISM": self.mechanism,
            "LIENTHONG_SASL_USERNAME": principal,
            "LIENTHONG_SASL_PASSWORD": self.passwords[principal],
        }

    async def grant(self, bootstrap_servers: str, topic_prefix: str) -> None:
        """Create every principal's ACLs for the topics named with ``topic_prefix``."""
        rules = [rule for rules in service_acls(topic_prefix).values() for rule in rules]
        await create_acls(bootstrap_servers, rules, **self.options())


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(text)


def principal_passwords(broker_dir: Path) -> tuple[dict[str, str], bool]:
    """Every service principal's password, kept in ``broker_dir``; and whether any was drawn now."""
    path = broker_dir / PASSWORDS_FILE
    kept: dict[str, str] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            kept = {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
        except ValueError:
            kept = {}
    wanted = list(service_acls())
    if all(name in kept for name in wanted):
        return {name: kept[name] for name in wanted}, False
    passwords = {name: kept.get(name) or secrets.token_urlsafe(24) for name in wanted}
    _write_private(path, json.dumps(passwords, indent=2) + "\n")
    return passwords, True


def secured_broker(broker_dir: Path, **broker_options: Any) -> tuple[LocalKafkaBroker, StackAccess]:
    """A (not started) local broker with SASL/SCRAM and ACLs, and the access to it. A broker folder
    whose storage was formatted without these principals (an older or an insecure run) loses its
    data first: credentials are written only when the storage is formatted."""
    fresh_admin = not (broker_dir / ADMIN_SECRET_FILE).exists()
    passwords, drawn = principal_passwords(broker_dir)
    if drawn or fresh_admin:
        shutil.rmtree(broker_dir / "kraft-logs", ignore_errors=True)
    broker = LocalKafkaBroker(broker_dir, sasl=True, scram_users=passwords, **broker_options)
    _ = broker.admin_password  # drawn and kept now, before the storage is formatted
    return broker, StackAccess(broker_dir / ADMIN_SECRET_FILE, passwords)


@contextmanager
def secured_local_broker(
    broker_dir: Path, **broker_options: Any
) -> Iterator[tuple[LocalKafkaBroker, StackAccess]]:
    """:func:`secured_broker`, started for the block and stopped after it."""
    broker, access = secured_broker(broker_dir, **broker_options)
    try:
        broker.start()  # inside: a start interrupted half way still stops the JVM
        yield broker, access
    finally:
        broker.stop()

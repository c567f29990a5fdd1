"""Every process a deployment runs, named once: its module, port, Kafka principal and signing producer.

Process names are those of the local stack (``intake``, ``connector-civil_status``, ``sandbox-land``);
:func:`dns_name` gives the form Kubernetes object names, Service host names and Compose service names
use (``connector-civil-status``). Topic names and ``LIENTHONG_AGENCY`` keep the agency id as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from schemas.agencies import Agency
from services.tools.localkafka.access import service_acls
from services.tools.stack.stack import SANDBOX_PREFIX, StackPorts, agency_url_variable, service_module

Kind = Literal["service", "connector", "sandbox"]

# The principal the topics job creates topics as (not a service: it reads and writes no record).
TOPICS_ADMIN = "lienthong-admin"

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def dns_name(name: str) -> str:
    """``name`` as a DNS-1123 label: lower case, ``_`` and ``.`` become ``-`` (``civil_status`` ->
    ``civil-status``). Raises ValueError for a name that still is not one."""
    label = re.sub(r"[_.]", "-", name.lower())
    if len(label) > 63 or not _DNS_LABEL.fullmatch(label):
        raise ValueError(f"{name!r} has no DNS-1123 form")
    return label


def is_dns_label(name: str) -> bool:
    return len(name) <= 63 and _DNS_LABEL.fullmatch(name) is not None


@dataclass(frozen=True)
class Component:
    """One process of the deployment."""

    kind: Kind
    name: str  # the local stack's name of the process
    module: str  # what ``python -m`` runs
    port: int
    agency: Agency | None = None

    @property
    def object_name(self) -> str:
        """Its Kubernetes objects' and Compose service's name."""
        return dns_name(self.name)

    @property
    def principal(self) -> str:
        """Its Kafka principal as access.py declares it (sandboxes have none)."""
        if self.kind == "sandbox":
            raise ValueError(f"{self.name} does not use Kafka")
        return self.name

    @property
    def producer(self) -> str:
        """The producer its events are signed as (``connector.land``), as the local stack names it."""
        return self.name.replace("connector-", "connector.", 1)

    @property
    def url_variable(self) -> str:
        """A connector's ``LIENTHONG_<AGENCY>_URL``."""
        if self.agency is None:
            raise ValueError(f"{self.name} has no agency")
        return agency_url_variable(self.agency)


def components() -> list[Component]:
    """The services, one connector per agency, and one sandbox per agency (a stand-in agency system)."""
    ports = StackPorts.fixed(tuple(Agency))
    found = [
        Component("service", "intake", service_module("intake"), ports.intake),
        Component("service", "router", service_module("router"), ports.router),
        Component("service", "tracker", service_module("tracker"), ports.tracker),
    ]
    for agency in Agency:
        name = f"connector-{agency.value}"
        found.append(Component("connector", name, service_module(name), ports.connectors[agency], agency))
    for agency in Agency:
        found.append(
            Component(
                "sandbox",
                f"{SANDBOX_PREFIX}{agency.value}",
                f"connectors.{agency.value}.sandbox",
                ports.sandboxes[agency],
                agency,
            )
        )
    principals = {c.principal for c in found if c.kind != "sandbox"}
    if principals != set(service_acls()):
        raise RuntimeError(f"access.py declares other principals: {sorted(set(service_acls()) ^ principals)}")
    return found


def bus_components() -> list[Component]:
    """The processes on the bus: the services and connectors (every one but the sandboxes)."""
    return [c for c in components() if c.kind != "sandbox"]


def sandbox_url(component: Component) -> str:
    """Where the sandbox of a connector's agency answers inside a cluster or a Compose network."""
    sandbox = next(c for c in components() if c.kind == "sandbox" and c.agency == component.agency)
    return f"http://{sandbox.object_name}:{sandbox.port}"

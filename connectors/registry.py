"""Which connector serves which agency: the built-in ones, plus any installed package's.

Built-in connectors are listed here explicitly (a test guards that every agency has one). A connector
that lives in its own package registers under the ``lienthong.connectors`` entry-point group, named
by its agency id, pointing at its Connector class.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points
from typing import Final

from connectors.base import Connector
from schemas.agencies import Agency

ENTRY_POINT_GROUP: Final = "lienthong.connectors"

BUILTIN_CONNECTORS: Final[dict[Agency, str]] = {
    Agency.LAND: "connectors.land.adapter:LandConnector",
    Agency.TAX: "connectors.tax.adapter:TaxConnector",
    Agency.CIVIL_STATUS: "connectors.civil_status.adapter:CivilStatusConnector",
    Agency.RESIDENCE: "connectors.residence.adapter:ResidenceConnector",
    Agency.SOCIAL_INSURANCE: "connectors.social_insurance.adapter:SocialInsuranceConnector",
    Agency.BUSINESS_REGISTRY: "connectors.business_registry.adapter:BusinessRegistryConnector",
}


class UnknownConnector(LookupError):
    pass


def _load(path: str) -> type[Connector]:
    module_name, _, attribute = path.partition(":")
    connector = getattr(import_module(module_name), attribute)
    if not (isinstance(connector, type) and issubclass(connector, Connector)):
        raise TypeError(f"{path} is not a Connector class")
    return connector


def connector_class(agency: Agency | str) -> type[Connector]:
    """The Connector class serving ``agency``: an installed package's first, else the built-in one.

    ``agency`` may be an id ``Agency`` does not know yet: an installed package can serve it.
    """
    name = agency.value if isinstance(agency, Agency) else str(agency)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == name:
            return _load(entry.value)
    try:
        return _load(BUILTIN_CONNECTORS[Agency(name)])
    except (KeyError, ValueError):
        raise UnknownConnector(f"no connector is installed for agency {name!r}") from None


def available_agencies() -> list[Agency]:
    installed = {
        Agency(e.name) for e in entry_points(group=ENTRY_POINT_GROUP) if e.name in Agency._value2member_map_
    }
    return sorted(installed | set(BUILTIN_CONNECTORS))

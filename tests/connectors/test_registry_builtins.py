"""The registry: every agency has a built-in connector, and a package can bring its own by entry point."""

from __future__ import annotations

from importlib.metadata import EntryPoint, EntryPoints
from typing import Any, ClassVar

import pytest

from connectors import registry
from connectors.base import Connector, HandoffRequest, HandoffResult
from connectors.land.adapter import LandConnector
from connectors.registry import BUILTIN_CONNECTORS, ENTRY_POINT_GROUP, UnknownConnector, connector_class
from schemas.agencies import AGENCY_ACTIONS, Agency


class OutsideConnector(Connector):
    """Stands for a connector shipped in another package."""

    agency: ClassVar[Agency] = Agency.LAND
    actions: ClassVar[frozenset[str]] = frozenset({"check_transfer"})

    async def handle(self, request: HandoffRequest) -> HandoffResult:
        raise NotImplementedError


def installed(monkeypatch: pytest.MonkeyPatch, **points: str) -> None:
    """Pretend packages declare ``points`` (agency id → ``module:Class``) in the entry-point group."""
    group = EntryPoints(EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in points.items())

    def entry_points(**selection: Any) -> EntryPoints:
        assert selection == {"group": ENTRY_POINT_GROUP}
        return group

    monkeypatch.setattr(registry, "entry_points", entry_points)


def test_every_agency_has_a_builtin_connector_serving_its_actions() -> None:
    assert set(BUILTIN_CONNECTORS) == set(Agency)
    for agency in Agency:
        cls = connector_class(agency)
        assert cls.agency is agency
        assert cls.actions <= AGENCY_ACTIONS[agency], f"{agency}: {cls.actions - AGENCY_ACTIONS[agency]}"


def test_an_installed_package_overrides_the_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, land=f"{__name__}:OutsideConnector")
    assert connector_class(Agency.LAND) is OutsideConnector
    assert connector_class("tax").agency is Agency.TAX, "other agencies keep their built-in connector"


def test_a_package_can_serve_an_agency_id_not_yet_in_the_enum(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, demo_agency=f"{__name__}:OutsideConnector")
    assert connector_class("demo_agency") is OutsideConnector
    assert registry.available_agencies() == sorted(Agency), "only known agencies run in the bus"
    with pytest.raises(UnknownConnector, match="other_agency"):
        connector_class("other_agency")


def test_an_entry_point_that_is_not_a_connector_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, land="connectors.land.adapter:LandSettings")
    with pytest.raises(TypeError, match="not a Connector class"):
        connector_class(Agency.LAND)


def test_without_entry_points_the_builtins_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch)
    assert connector_class(Agency.LAND) is LandConnector

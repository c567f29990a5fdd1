"""The runtime can build every built-in connector with no arguments, configured from the environment."""

from __future__ import annotations

import pytest

from connectors.base import HandoffRequest
from connectors.civil_status.adapter import CivilStatusSettings
from connectors.land.adapter import LandConnector, LandSettings
from connectors.registry import BUILTIN_CONNECTORS, connector_class
from connectors.tax.adapter import TaxSettings
from schemas.agencies import AGENCY_ACTIONS, Agency


@pytest.mark.parametrize("agency", sorted(BUILTIN_CONNECTORS))
async def test_builtin_connectors_start_with_no_arguments(agency: Agency) -> None:
    cls = connector_class(agency)
    assert cls.agency is agency and cls.actions == AGENCY_ACTIONS[agency]
    connector = cls()
    await connector.start()
    await connector.stop()
    await connector.stop()  # stopping twice is harmless


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert LandSettings().url.endswith(":8200") and TaxSettings().url.endswith(":8201")
    assert CivilStatusSettings().url.endswith(":8202") and LandSettings().timeout_s == 10
    monkeypatch.setenv("LIENTHONG_LAND_URL", "http://land.test:9000")
    monkeypatch.setenv("LIENTHONG_TAX_TIMEOUT_S", "2.5")
    monkeypatch.setenv("LIENTHONG_CIVIL_STATUS_URL", "http://civil.test")
    assert LandSettings().url == "http://land.test:9000"
    assert TaxSettings().timeout_s == 2.5
    assert CivilStatusSettings().url == "http://civil.test"


async def test_handle_before_start_is_a_clear_error() -> None:
    request = HandoffRequest("h", "d", "c", "p", "s", "check_transfer", "land_transfer", {})
    with pytest.raises(RuntimeError, match="start"):
        await LandConnector().handle(request)

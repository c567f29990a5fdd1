"""The client map intake reads (deploy/oidc/clients.yaml) and the bearer header: plain checks, no provider."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.catalog import load_catalog
from schemas.events import Channel
from services.intake.clients import ClientMapError, load_client_map
from services.runtime.auth.bearer import TokenRejected, bearer_token

CLIENTS_FILE = Path(__file__).resolve().parents[2] / "deploy" / "oidc" / "clients.yaml"


def test_shipped_map_gives_each_client_system_its_channels_and_procedures() -> None:
    clients = load_client_map(CLIENTS_FILE, load_catalog())
    assert clients.refusal("counter-app", Channel.COUNTER, "9.900001") is None
    assert clients.refusal("online-portal", Channel.ONLINE, "9.900001") is None
    assert "counter channel" in (clients.refusal("online-portal", Channel.COUNTER, "9.900001") or "")
    assert clients.refusal("provincial-one-stop", Channel.COUNTER, "9.900005") is None
    assert "9.900001" in (clients.refusal("provincial-one-stop", Channel.ONLINE, "9.900001") or "")
    assert "not allowed" in (clients.refusal("someone-else", Channel.COUNTER, "9.900001") or "")


def test_a_map_naming_an_unknown_procedure_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "clients.yaml"
    path.write_text(
        "clients:\n  x:\n    channels: [counter]\n    procedures: ['0.000000']\n", encoding="utf-8"
    )
    with pytest.raises(ClientMapError, match="unknown procedures"):
        load_client_map(path, load_catalog())


def test_a_map_with_a_client_without_channels_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "clients.yaml"
    path.write_text("clients:\n  x:\n    channels: []\n", encoding="utf-8")
    with pytest.raises(ClientMapError, match="not valid"):
        load_client_map(path, load_catalog())


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer  ", "Bearer " + "x" * 20000])
def test_bearer_header_is_refused_unless_it_carries_a_token(header: str | None) -> None:
    with pytest.raises(TokenRejected):
        bearer_token(header)


def test_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_token("bearer abc.def.ghi") == "abc.def.ghi"

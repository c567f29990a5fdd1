"""Which client systems may submit which dossiers: the client map intake reads when it authenticates
submissions (``LIENTHONG_OIDC_CLIENTS_FILE``, e.g. ``deploy/oidc/clients.yaml``).

A client is named by its OAuth client id; it may use the channels listed and, when ``procedures`` is
given, only those procedures. A client the map does not name may submit nothing.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.catalog import Catalog
from schemas.events import Channel


class ClientGrant(BaseModel):
    """What one client system may submit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    channels: frozenset[Channel] = Field(min_length=1)
    procedures: frozenset[str] | None = Field(default=None, description="None: every procedure.")


class ClientMap(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    clients: dict[str, ClientGrant]

    def refusal(self, client_id: str, channel: Channel, procedure_code: str) -> str | None:
        """Why ``client_id`` may not submit a ``procedure_code`` dossier on ``channel``; None if it may."""
        grant = self.clients.get(client_id)
        if grant is None:
            return f"the client {client_id!r} is not allowed to submit dossiers"
        if channel not in grant.channels:
            return f"the client {client_id!r} may not submit on the {channel.value} channel"
        if grant.procedures is not None and procedure_code not in grant.procedures:
            return f"the client {client_id!r} may not submit dossiers of procedure {procedure_code}"
        return None


class ClientMapError(ValueError):
    """The client map file is missing, not YAML, or not a valid map for this catalog."""


def load_client_map(path: Path, catalog: Catalog) -> ClientMap:
    """The map in ``path``, checked against ``catalog`` (a procedure it does not know is an error)."""
    try:
        client_map = ClientMap.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except OSError as error:
        raise ClientMapError(f"the client map {path} cannot be read: {error.strerror}") from error
    except (yaml.YAMLError, ValidationError) as error:
        raise ClientMapError(f"the client map {path} is not valid: {error}") from error
    known = {p.code for p in catalog.procedures}
    for client_id, grant in client_map.clients.items():
        unknown = sorted((grant.procedures or frozenset()) - known)
        if unknown:
            raise ClientMapError(f"the client map {path} gives {client_id!r} unknown procedures {unknown}")
    return client_map

"""Staff: a person (or an operations script) signed in with the OpenID Connect provider, and the roles
the provider gives them.

The roles are the provider's realm roles (Keycloak puts them in ``realm_access.roles``; a provider that
puts a flat list in ``roles`` works too). Each role grants what the one before it does not:

- ``viewer``: the supervision page and the read API;
- ``operator``: replay, and every action the desk takes on a dossier;
- ``auditor``: unmasked dead letters (``lienthong dlq show --unmask``); the handoff log itself is
  read from the tracker's database (``lienthong audit``), guarded by that database's credentials.

Roles do not imply one another: an operator who should also see the page is given ``viewer`` too, so
that the provider's role list is the whole truth about a person. Tokens meant for staff carry the
audience :data:`STAFF_AUDIENCE` (the provider adds it to the ``supervision-page``, ``lienthong-cli``
and ``operations-automation`` clients; see ``deploy/oidc/lienthong-realm.json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from services.runtime.auth.bearer import VerifiedToken

STAFF_AUDIENCE: Final = "lienthong-supervision"


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    AUDITOR = "auditor"


def roles_from_claims(claims: Mapping[str, Any]) -> frozenset[Role]:
    """The known roles a token's claims grant; unknown role names are ignored."""
    names: list[Any] = []
    realm_access = claims.get("realm_access")
    if isinstance(realm_access, Mapping) and isinstance(realm_access.get("roles"), list):
        names += realm_access["roles"]
    if isinstance(claims.get("roles"), list):
        names += claims["roles"]
    known = {role.value: role for role in Role}
    return frozenset(known[name] for name in names if isinstance(name, str) and name in known)


@dataclass(frozen=True)
class Staff:
    """Who acts: the provider's stable ``sub`` (recorded in the handoff log; never a name or an e-mail
    address), the user name to greet them with on the page, and their roles."""

    subject: str
    username: str | None
    roles: frozenset[Role]

    def may(self, role: Role) -> bool:
        return role in self.roles

    @classmethod
    def from_token(cls, token: VerifiedToken) -> Staff:
        """The staff member a verified access token names (a service account's subject is its own)."""
        claims = token.claims
        username = claims.get("preferred_username")
        return cls(
            subject=token.subject or token.client_id,
            username=username if isinstance(username, str) else None,
            roles=roles_from_claims(claims),
        )

"""Client systems authenticated at intake's door: an OAuth 2.0 client-credentials access token
(:mod:`services.runtime.auth.bearer`), and the client map (:mod:`services.intake.clients`) saying
which channels and procedures that client may submit. On when ``LIENTHONG_OIDC_ISSUER`` is set.

Authentication comes first, before anything in the request is looked at: 401 with
``WWW-Authenticate: Bearer`` (RFC 6750). Authorization needs the dossier's channel and procedure,
read from the body with the same strict reader the validation uses; a body it cannot read is
refused by the validation (422) whatever the client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fastapi.responses import JSONResponse

from schemas.catalog import Catalog
from schemas.events import Channel
from services.intake.clients import ClientMap, load_client_map
from services.intake.submission import InvalidSubmission, read_document
from services.runtime.auth.bearer import BearerVerifier, ProviderUnavailable, TokenRejected, bearer_token

log = logging.getLogger(__name__)
AUDIENCE = "lienthong-intake"  # the `aud` the provider puts in tokens meant for intake
_REALM = f'Bearer realm="{AUDIENCE}"'


@dataclass(frozen=True)
class SubmissionAuth:
    """Who may submit: the token check and the client map."""

    verifier: BearerVerifier
    clients: ClientMap

    async def client_id(self, authorization: str | None) -> str | JSONResponse:
        """The verified client id of the request, or the 401/503 answer to give instead."""
        try:
            token = bearer_token(authorization)
        except TokenRejected as rejected:  # no credentials: RFC 6750 says no error code then
            return _unauthorized(rejected.reason, _REALM)
        try:
            return (await self.verifier.verify(token)).client_id
        except TokenRejected as rejected:
            return _unauthorized(rejected.reason, f'{_REALM}, error="invalid_token"')
        except ProviderUnavailable as error:
            log.warning("access token not checked: %s", error)
            return JSONResponse(
                status_code=503,
                content={"detail": "the identity provider cannot be reached to check the token; try again"},
                headers={"Retry-After": "5"},
            )

    def refusal(self, client_id: str, body: bytes) -> JSONResponse | None:
        """The 403 answer when ``client_id`` may not submit this dossier; None when it may (or when the
        body is too broken to tell, which the validation refuses anyway)."""
        try:
            document = read_document(body)
        except InvalidSubmission:
            return None
        code = document.get("procedure_code")
        try:
            channel = Channel(document.get("channel", Channel.COUNTER))
        except ValueError:
            return None
        if not isinstance(code, str):
            return None
        reason = self.clients.refusal(client_id, channel, code)
        if reason is None:
            return None
        return JSONResponse(
            status_code=403,
            content={"detail": reason},
            headers={"WWW-Authenticate": f'{_REALM}, error="insufficient_scope"'},
        )


def _unauthorized(reason: str, challenge: str) -> JSONResponse:
    return JSONResponse(status_code=401, content={"detail": reason}, headers={"WWW-Authenticate": challenge})


def submission_auth(
    issuer: str | None,
    audience: str,
    clients_file: Path | None,
    catalog: Catalog,
    now: Callable[[], datetime],
) -> SubmissionAuth | None:
    """The check configured by intake's settings, or None (and one warning line) without an issuer."""
    if not issuer:
        log.warning(
            "submissions are not authenticated: anyone who reaches intake can submit a dossier "
            "(set LIENTHONG_OIDC_ISSUER and LIENTHONG_OIDC_CLIENTS_FILE to require client tokens)"
        )
        return None
    if clients_file is None:
        raise ValueError("LIENTHONG_OIDC_ISSUER is set: LIENTHONG_OIDC_CLIENTS_FILE must name the client map")
    clients = load_client_map(clients_file, catalog)
    return SubmissionAuth(BearerVerifier(issuer, audience, now=now), clients)

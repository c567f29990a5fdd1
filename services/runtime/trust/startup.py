"""Fail closed: a service that cannot sign what it emits or verify what it reads does not start.

Every ``python -m services.<name>`` calls :func:`require_trust` before it builds anything. A service
that consumes events needs the trust store (``LIENTHONG_TRUST_STORE``), one that emits events needs
its signing key (``LIENTHONG_SIGNING_KEY``), which must be its own producer's key. When one is
missing or unusable the process exits with one sentence on stderr that says what to set.

The development switch ``LIENTHONG_INSECURE_DEV=1`` lets a service start without them, with a
warning at start. The local stack and the tests give every service its keys instead.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from services.runtime.observe.logs import configure_logging
from services.runtime.shell.settings import SigningSettings
from services.runtime.trust import signing
from services.runtime.trust.keys import KeyFileError, load_signing_key

log = logging.getLogger(__name__)

SWITCH = "LIENTHONG_INSECURE_DEV=1 for development only"


class TrustNotConfigured(Exception):
    """Why a service refuses to start, as one sentence."""


def _verifier(service: str, path: Path | None) -> signing.Verifier | None:
    if path is None:
        return None
    try:
        return signing.Verifier(path)
    except (KeyFileError, OSError) as error:
        raise TrustNotConfigured(
            f"{service} refuses to start: its trust store (LIENTHONG_TRUST_STORE) cannot be used: {error}."
        ) from None


def _signer(service: str, path: Path | None, producer: str) -> signing.Signer | None:
    if path is None:
        return None
    try:
        key = load_signing_key(path)
    except KeyFileError as error:
        raise TrustNotConfigured(
            f"{service} refuses to start: its signing key (LIENTHONG_SIGNING_KEY) cannot be used: {error}."
        ) from None
    if key.producer != producer:
        raise TrustNotConfigured(
            f"{service} refuses to start: its signing key {path.name} (LIENTHONG_SIGNING_KEY) is the key of "
            f"{key.producer!r}, and it emits events as {producer!r}."
        )
    return signing.Signer(key, path=path)  # follows a rotation of the key file without a restart


def check_trust(
    service: str, *, signs_as: str | None, verifies: bool, settings: SigningSettings | None = None
) -> tuple[signing.Signer | None, signing.Verifier | None]:
    """The service's signer and verifier, loaded from ``settings`` (the environment by default).

    ``signs_as``: the producer whose events the service emits (None: it emits none of its own);
    ``verifies``: whether it consumes events. Raises :class:`TrustNotConfigured` when one it needs is
    missing (unless the development switch is on) or cannot be used (whatever the switch says)."""
    settings = settings or SigningSettings()
    signer = _signer(service, settings.signing_key, signs_as) if signs_as is not None else None
    verifier = _verifier(service, settings.trust_store) if verifies else None
    missing = []
    if verifies and verifier is None:
        missing.append("no trust store (LIENTHONG_TRUST_STORE) to verify the events it reads")
    if signs_as is not None and signer is None:
        missing.append("no signing key (LIENTHONG_SIGNING_KEY) to sign the events it emits")
    if missing and not settings.insecure_dev:
        them = "them" if len(missing) > 1 else "it"
        raise TrustNotConfigured(
            f"{service} refuses to start: {' and '.join(missing)}; set {them}, or {SWITCH}."
        )
    if missing:
        log.warning(
            "%s starts INSECURE (LIENTHONG_INSECURE_DEV): %s; for development only, never in a deployment",
            service,
            " and ".join(missing),
        )
    return signer, verifier


def require_trust(service: str, *, signs_as: str | None, verifies: bool) -> None:
    """:func:`check_trust` for this process: what it loads becomes the process's signer and verifier
    (:func:`services.runtime.trust.signing.configure`); a refusal ends the process with its sentence.

    It is the first thing a service process does, so it also sets up the process's logging: what is
    said at start (this check's warning, those of building the app) comes out as the same masked JSON
    lines as the rest, not as the bare text of Python's last-resort handler."""
    configure_logging(service)
    try:
        signer, verifier = check_trust(service, signs_as=signs_as, verifies=verifies)
    except TrustNotConfigured as refusal:
        sys.exit(str(refusal))
    signing.configure(signer=signer, verifier=verifier if verifies else signing.UNSET)

"""Signed events: every producer signs what it emits, every consumer verifies what it reads.

**What is signed**: the event's canonical form — the event as JSON (``model_dump(mode="json")``)
without its ``signature`` field, keys sorted at every level, compact separators, UTF-8. ``key_id`` is
inside the signed form. The CloudEvents headers are not signed separately: the consumer already
refuses a record whose headers disagree with its value (:func:`schemas.events.parse_event`), so the
signature covers them. The signature (Ed25519, base64) and the key id travel in the envelope's
``signature`` and ``key_id`` fields, mirrored in the ``ce_signature`` and ``ce_keyid`` headers.

**Where**: signing happens in one place, :func:`services.runtime.consume.records.event_record`, with the
process's key (``LIENTHONG_SIGNING_KEY``); verifying in one place, ``EventConsumer.parse``, against
the trust store (``LIENTHONG_TRUST_STORE``). A key signs only events of its own producer, and a
trusted key is accepted only for events of its own producer: the land connector cannot speak for the
router. An event that is unsigned, signed by an unknown key, by another producer's key, or whose
signature does not match (forged or tampered) is a :class:`SignatureError`: dead-lettered with error
class ``signature``, never handled. The runtime's own delivery headers that change deduplication (a
replay id, a retry attempt) are signed apart, by whoever sets them
(:mod:`services.runtime.trust.header_signing`).

**Rotation** takes effect without a restart on both sides: the verifier re-reads the trust store
when it changes, and a signer made from a key file re-reads the file when it changes.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
import time
from pathlib import Path
from typing import TypeVar

import orjson
from cryptography.exceptions import InvalidSignature

from schemas.envelope import CE_KEYID, CE_SIGNATURE, Event
from schemas.errors import SignatureError
from services.runtime.shell.settings import SigningSettings
from services.runtime.trust.keys import (
    KeyFileError,
    SigningKey,
    TrustedKey,
    load_signing_key,
    load_trust_store,
)

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)

__all__ = ["CE_KEYID", "CE_SIGNATURE", "UNSET", "SignatureError", "Signer", "Verifier", "canonical_form"]


class SigningMismatch(ValueError):
    """A process asked to sign an event of another producer (a bug, not an attack)."""


def canonical_form(event: Event) -> bytes:
    """The bytes a signature covers: the event without ``signature``, sorted keys, compact, UTF-8."""
    return orjson.dumps(event.model_dump(mode="json", exclude={"signature"}), option=orjson.OPT_SORT_KEYS)


class Signer:
    """Signs with a producer's key. Made from the key file (:meth:`from_file`), it re-reads the file
    when it changes (checked at most once per ``recheck_s``): ``lienthong keys rotate`` takes effect
    without a restart. A file that no longer holds a usable key of the same producer is ignored (the
    key loaded before keeps signing, and it is logged)."""

    def __init__(self, key: SigningKey, *, path: Path | None = None, recheck_s: float = 1.0) -> None:
        self._key = key
        self.path = path
        self.recheck_s = recheck_s
        self._lock = threading.Lock()
        self._stamp = _file_stamp(path) if path is not None else None
        self._checked = time.monotonic()

    @classmethod
    def from_file(cls, path: Path, *, recheck_s: float = 1.0) -> Signer:
        return cls(load_signing_key(path), path=path, recheck_s=recheck_s)

    @property
    def key(self) -> SigningKey:
        if self.path is None or time.monotonic() - self._checked < self.recheck_s:
            return self._key
        with self._lock:
            self._checked = time.monotonic()
            stamp = _file_stamp(self.path)
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    key = load_signing_key(self.path)
                except KeyFileError as error:
                    log.error(
                        "the signing key file changed and cannot be used (%s); keeping the key loaded before",
                        error,
                    )
                else:
                    if key.producer != self._key.producer:
                        log.error(
                            "the signing key file now holds a key of %r, not %r; keeping the key loaded"
                            " before",
                            key.producer,
                            self._key.producer,
                        )
                    elif key.key_id != self._key.key_id:
                        log.warning("signing with the rotated key %s (was %s)", key.key_id, self._key.key_id)
                        self._key = key
        return self._key

    def sign(self, event: E) -> E:
        key = self.key
        if event.producer != key.producer:
            raise SigningMismatch(
                f"the key of {key.producer!r} cannot sign an event of producer {event.producer!r}"
            )
        unsigned = event.model_copy(update={"key_id": key.key_id, "signature": None})
        signature = key.private_key.sign(canonical_form(unsigned))
        return unsigned.model_copy(update={"signature": base64.b64encode(signature).decode()})


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


class Verifier:
    """Verifies events against a trust store directory, re-read when it changes (rotation and removal
    take effect without a restart; the directory is checked at most once per ``recheck_s``)."""

    def __init__(self, trust_store: Path, *, recheck_s: float = 1.0) -> None:
        self.trust_store = trust_store
        self.recheck_s = recheck_s
        self._lock = threading.Lock()
        self._stamp = self._dir_stamp()
        self._keys = load_trust_store(trust_store)
        self._checked = time.monotonic()

    def _dir_stamp(self) -> tuple[tuple[str, int, int], ...]:
        """What the trust store holds: names, times and sizes of its entries (a change means a re-read)."""
        try:
            with os.scandir(self.trust_store) as entries:
                stats = [(e.name, e.stat()) for e in entries if e.name.endswith(".json")]
        except OSError:
            return ()
        return tuple(sorted((name, st.st_mtime_ns, st.st_size) for name, st in stats))

    def _trusted(self, *, at_once: bool = False) -> dict[str, TrustedKey]:
        """The trusted keys; re-read if the directory changed (looked at once per ``recheck_s``, or
        now with ``at_once``: a key id not known yet may have just been added)."""
        now = time.monotonic()
        if at_once or now - self._checked >= self.recheck_s:
            with self._lock:
                self._checked = now
                stamp = self._dir_stamp()
                if stamp != self._stamp:
                    try:
                        self._keys = load_trust_store(self.trust_store)
                        self._stamp = stamp
                    except Exception:
                        log.exception("the trust store could not be re-read; keeping the keys loaded before")
        return self._keys

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._trusted())

    def trusted_key(self, key_id: str) -> TrustedKey | None:
        """The trusted key of that id, or None. An id not known yet makes the verifier look at the
        trust store at once: a rotated key may sign before the next periodic look (a signer follows
        its key file as a verifier follows the store, each on its own clock)."""
        return self._trusted().get(key_id) or self._trusted(at_once=True).get(key_id)

    def verify(self, event: Event) -> None:
        """Raise :class:`SignatureError` (with a reason naming keys and producers, never data) unless
        the event carries a valid signature by a trusted key of its own producer."""
        if event.signature is None or event.key_id is None:
            raise SignatureError("unsigned event: no signature or no key_id")
        trusted = self.trusted_key(event.key_id)
        if trusted is None:
            raise SignatureError(f"signed by unknown key {event.key_id[:80]!r} (not in the trust store)")
        if trusted.producer != event.producer:
            raise SignatureError(
                f"key {trusted.key_id!r} belongs to {trusted.producer!r}, not to the event's producer "
                f"{event.producer!r}"
            )
        try:
            signature = base64.b64decode(event.signature.encode(), validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError(f"malformed signature for key {trusted.key_id!r}") from None
        try:
            trusted.public_key.verify(signature, canonical_form(event))
        except InvalidSignature:
            raise SignatureError(
                f"signature does not match the event for key {trusted.key_id!r} (forged or tampered)"
            ) from None


# --- the process's signer and verifier, from the environment ----------------------------------

_UNSET = object()
UNSET = _UNSET  # for configure(): "read it from the environment when first needed"
_signer: Signer | object | None = _UNSET
_verifier: Verifier | object | None = _UNSET


def process_signer() -> Signer | None:
    """The signer of this process (``LIENTHONG_SIGNING_KEY``), or None: events go out unsigned. A
    service has its signer checked and set at start (:mod:`services.runtime.trust.startup`)."""
    global _signer
    if _signer is _UNSET:
        path = SigningSettings().signing_key
        _signer = Signer.from_file(path) if path is not None else None
        if _signer is None:
            log.warning("no signing key (LIENTHONG_SIGNING_KEY): events are emitted unsigned")
    assert _signer is None or isinstance(_signer, Signer)
    return _signer


def process_verifier() -> Verifier | None:
    """The verifier of this process (``LIENTHONG_TRUST_STORE``), or None: nothing is verified. A
    service has its verifier checked and set at start (:mod:`services.runtime.trust.startup`)."""
    global _verifier
    if _verifier is _UNSET:
        path = SigningSettings().trust_store
        _verifier = Verifier(path) if path is not None else None
        if _verifier is None:
            log.warning("no trust store (LIENTHONG_TRUST_STORE): event signatures are NOT verified")
    assert _verifier is None or isinstance(_verifier, Verifier)
    return _verifier


def configure(
    *, signer: Signer | object | None = _UNSET, verifier: Verifier | object | None = _UNSET
) -> None:
    """Set (or, with no argument, forget so that the environment is read again) the process's signer
    and verifier; for tests and embedding."""
    global _signer, _verifier
    _signer = signer
    _verifier = verifier


def sign_if_configured(event: E) -> E:
    signer = process_signer()
    return signer.sign(event) if signer is not None else event

"""Signed delivery headers: who may make a record "a new delivery" of an event it has seen.

A consumer deduplicates by event id, except that a pass through a delay tier (``lienthong-retry-attempt``)
and an operator's replay (``lienthong-replay-id``) are deliberate new deliveries of the same event
(:func:`services.runtime.consume.consumer.dedupe_key`). The event's own signature does not cover
these headers (they are added after the event was signed, by someone else), so whoever sets one also
signs them: ``lienthong-headers-signature`` (Ed25519, base64) with ``lienthong-headers-keyid``, over
:func:`signed_form` — the event id and the value of each of :data:`DEDUPE_HEADERS` the record carries.

**Who may sign them** (this module is the one place that says it):

- a **retry attempt** (with the replay id it carries, if any): only the consuming service itself, the
  producer of its own signing key (a connector sends its handoffs through its own delay tiers and
  re-signs each copy; it carries a replay id only after verifying it on the copy it received);
- a **replay id** alone: only a replayer, :data:`REPLAYERS` — the dead-letter tool (``lienthong dlq
  replay``, producer :data:`REPLAY_TOOL`) and the tracker (its supervision page's replay button).

A record with one of these headers and no signature, a signature that does not verify, or a key not
in the trust store is a :class:`HeaderSignatureError` (error class ``signature``); a valid signature by
a key whose producer may not set these headers is a :class:`NotAllowedToRedeliver` (class
``authorization``). Either way the record is dead-lettered and never handled, so a replay or retry
header added by hand to an old record cannot give it a fresh dedupe key.

**The age window**: a consumer that verifies refuses an event whose ``occurred_at`` is older than
``LIENTHONG_MAX_EVENT_AGE`` (:class:`EventTooOld`, class ``authorization``) unless the record is a
verified replay (:func:`services.runtime.consume.consumer.EventConsumer`); one it processed before is
skipped as any redelivery is.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Mapping
from typing import Final
from uuid import UUID

import orjson
from cryptography.exceptions import InvalidSignature

from schemas.errors import EventContractError, SignatureError
from services.runtime.consume import headers
from services.runtime.trust.signing import Signer, Verifier

REPLAY_TOOL: Final = "dlq-tool"
REPLAYERS: Final = frozenset({REPLAY_TOOL, "tracker"})
DEDUPE_HEADERS: Final = (headers.REPLAY_ID, headers.RETRY_ATTEMPT)


class HeaderSignatureError(SignatureError):
    """A replay or retry header without a valid signature of a trusted key."""


class NotAllowedToRedeliver(EventContractError):
    """A replay or retry header validly signed by a producer that may not set it."""


class EventTooOld(EventContractError):
    """An event older than the age window that is not an operator's replay."""


def dedupe_values(record_headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of :data:`DEDUPE_HEADERS` the record carries, by name."""
    return {name: record_headers[name] for name in DEDUPE_HEADERS if name in record_headers}


def signed_form(event_id: UUID | str, values: Mapping[str, str]) -> bytes:
    """The bytes a header signature covers: the event id and the dedupe-changing headers, as sorted JSON."""
    return orjson.dumps({"event_id": str(event_id), "headers": dict(values)}, option=orjson.OPT_SORT_KEYS)


def sign_headers(signer: Signer, event_id: UUID | str, record_headers: Mapping[str, str]) -> dict[str, str]:
    """The signature headers to add to a record carrying ``record_headers`` (none when it carries none
    of :data:`DEDUPE_HEADERS`)."""
    values = dedupe_values(record_headers)
    if not values:
        return {}
    key = signer.key
    signature = key.private_key.sign(signed_form(event_id, values))
    return {
        headers.HEADERS_SIGNATURE: base64.b64encode(signature).decode(),
        headers.HEADERS_KEY_ID: key.key_id,
    }


def signed_if_possible(
    signer: Signer | None, event_id: UUID | str, record_headers: Mapping[str, str]
) -> dict[str, str]:
    """``record_headers`` with their signature (unchanged without a signer: a development setup that
    verifies nothing either)."""
    kept = {
        k: v
        for k, v in record_headers.items()
        if k not in (headers.HEADERS_SIGNATURE, headers.HEADERS_KEY_ID)
    }
    return kept if signer is None else kept | sign_headers(signer, event_id, kept)


def verify_headers(
    verifier: Verifier, event_id: UUID | str, record_headers: Mapping[str, str], *, retriers: Collection[str]
) -> bool:
    """Check the signature over the record's dedupe-changing headers; True when it is a verified replay
    (it carries a replay id), False when it carries none of them or only a retry attempt. ``retriers``:
    the producers that may set a retry attempt (the consuming service's own)."""
    values = dedupe_values(record_headers)
    if not values:
        return False
    what = " and ".join(values)
    signature_text = record_headers.get(headers.HEADERS_SIGNATURE)
    key_id = record_headers.get(headers.HEADERS_KEY_ID)
    if not signature_text or not key_id:
        raise HeaderSignatureError(f"unsigned {what} header (no {headers.HEADERS_SIGNATURE})")
    trusted = verifier.trusted_key(key_id)
    if trusted is None:
        raise HeaderSignatureError(f"{what} header signed by unknown key {key_id[:80]!r}")
    try:
        signature = base64.b64decode(signature_text.encode(), validate=True)
        trusted.public_key.verify(signature, signed_form(event_id, values))
    except (binascii.Error, ValueError, InvalidSignature):
        raise HeaderSignatureError(
            f"{what} header signature does not match for key {trusted.key_id!r} (forged or tampered)"
        ) from None
    if headers.RETRY_ATTEMPT in values:
        if trusted.producer not in retriers:
            raise NotAllowedToRedeliver(
                f"retry attempt header signed by {trusted.producer!r}: only the consuming service "
                f"({', '.join(sorted(retriers)) or 'none'}) sends its records through its delay tiers"
            )
    elif trusted.producer not in REPLAYERS:
        raise NotAllowedToRedeliver(
            f"replay id header signed by {trusted.producer!r}: only {', '.join(sorted(REPLAYERS))} replay"
        )
    return headers.REPLAY_ID in values

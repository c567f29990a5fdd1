"""The handoff log's head, anchored outside the tracker: signed, on the compacted ``audit.heads`` topic.

A chain verifies by itself even when it was rewritten whole (a database rebuilt from scratch with a
self-consistent chain) or cut short. So the tracker publishes the chain's head — ``{chain, seq, hash,
at}`` — signed with its key, keyed by the chain's name on a compacted topic: the topic keeps the newest
head of each chain. ``lienthong audit verify`` reads it, checks its signature against the trust store,
and checks that the database's chain holds that hash at that sequence number.

The head is published every ``LIENTHONG_AUDIT_ANCHOR_INTERVAL_S`` seconds when it changed. Several
tracker instances on one PostgreSQL schema share one chain, so each publishes the same head (a
repeat changes nothing on a compacted topic). Before it publishes, an instance checks that its chain
still holds the head anchored last: a chain that does not (rewritten, truncated or lost) is never
anchored over the evidence — it is logged as an error, and the anchored head stays as it was.

What is signed: the head's canonical JSON (sorted keys, compact, UTF-8) without ``signature``, with
``key_id`` and ``producer`` inside. Only a key of the tracker (producer ``tracker``) may sign a head.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaProducer
from cryptography.exceptions import InvalidSignature
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import AUDIT_HEADS, TopicSpec, all_topics
from services.runtime.failures.dead_letter_replay import read_records
from services.runtime.shell.settings import KafkaSettings, client_security_options
from services.runtime.storage.database import Connection
from services.runtime.trust import signing
from services.runtime.trust.signing import Signer, Verifier
from services.tracker import audit
from services.tracker.store import TrackerStore

log = logging.getLogger(__name__)

CHAIN: Final = "handoff-log"
"""The name of the tracker's chain: the anchored head's record key."""
ANCHOR_PRODUCER: Final = "tracker"
"""The only producer whose key may sign an anchored head."""


class AnchorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIENTHONG_", extra="ignore")

    audit_anchor_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="How often the tracker publishes the handoff log's head (when changed).",
    )


class AnchoredHead(BaseModel):
    """A chain's head as published: which chain, its newest entry's sequence number and hash, when,
    and who signed it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chain: str
    seq: int = Field(ge=1)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    at: datetime
    producer: str
    key_id: str
    signature: str | None = None

    def signed_form(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude={"signature"}), option=orjson.OPT_SORT_KEYS)


class HeadRejected(ValueError):
    """An anchored head that cannot be trusted (the message is one sentence naming why)."""


def sign_head(signer: Signer, seq: int, hash_: str, at: datetime, chain: str = CHAIN) -> AnchoredHead:
    key = signer.key
    if key.producer != ANCHOR_PRODUCER:
        raise ValueError(
            f"the key of {key.producer!r} cannot sign the handoff log's head, only {ANCHOR_PRODUCER}'s"
        )
    unsigned = AnchoredHead(chain=chain, seq=seq, hash=hash_, at=at, producer=key.producer, key_id=key.key_id)
    signature = base64.b64encode(key.private_key.sign(unsigned.signed_form())).decode()
    return unsigned.model_copy(update={"signature": signature})


def verify_head(head: AnchoredHead, verifier: Verifier) -> None:
    """Raise :class:`HeadRejected` unless ``head`` is signed by a trusted key of the tracker."""
    if head.signature is None:
        raise HeadRejected("the anchored head is not signed")
    trusted = verifier.trusted_key(head.key_id)
    if trusted is None:
        raise HeadRejected(f"the anchored head is signed by key {head.key_id[:80]!r}, not in the trust store")
    if trusted.producer != ANCHOR_PRODUCER or head.producer != ANCHOR_PRODUCER:
        raise HeadRejected(f"the anchored head is signed by {trusted.producer}'s key, not the tracker's")
    try:
        trusted.public_key.verify(base64.b64decode(head.signature, validate=True), head.signed_form())
    except (InvalidSignature, binascii.Error, ValueError):
        raise HeadRejected(f"the anchored head's signature does not match (key {head.key_id!r})") from None


def heads_topic(prefix: str = "") -> list[TopicSpec]:
    return [spec for spec in all_topics(prefix) if spec.name == prefix + AUDIT_HEADS]


async def read_anchored_head(
    bootstrap: str, *, prefix: str = "", chain: str = CHAIN, **options: Any
) -> AnchoredHead | None:
    """The newest head of ``chain`` on the topic (None if none was ever anchored). A record that is not
    a head is skipped; the signature is not checked here (see :func:`verify_head`)."""
    found: AnchoredHead | None = None
    for record in await read_records(bootstrap, heads_topic(prefix), **options):
        if record.key != chain.encode() or record.value is None:
            continue
        try:
            head = AnchoredHead.model_validate_json(record.value)
        except ValidationError:
            log.warning("a record on %s is not an anchored head; skipped", prefix + AUDIT_HEADS)
            continue
        if head.chain == chain:
            found = head  # records of one key are in order: the last is the newest
    return found


async def publish_head(bootstrap: str, head: AnchoredHead, *, prefix: str = "", **options: Any) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **options)
    await producer.start()
    try:
        await producer.send_and_wait(
            prefix + AUDIT_HEADS, head.model_dump_json().encode(), key=head.chain.encode()
        )
    finally:
        await producer.stop()


def holds(conn: Connection, head: AnchoredHead) -> bool:
    """Whether the chain in ``conn`` has the anchored head's hash at its sequence number."""
    return audit.hash_at(conn, head.seq) == head.hash


class Anchor:
    """Publishes the chain's head when it changed, never over an anchored head the chain lost."""

    def __init__(
        self,
        conn: Callable[[], Connection],
        bootstrap: str,
        signer: Signer,
        *,
        prefix: str = "",
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        **options: Any,
    ) -> None:
        self.conn = conn
        self.bootstrap = bootstrap
        self.signer = signer
        self.prefix = prefix
        self.now = now
        self.options = options
        self.last: AnchoredHead | None = None
        self._read = False

    async def once(self) -> AnchoredHead | None:
        """Publish the head if it changed since the one anchored; the head published, or None."""
        if not self._read:  # the head anchored before this process (another instance's, or its own)
            self.last = await read_anchored_head(self.bootstrap, prefix=self.prefix, **self.options)
            self._read = True
        current = audit.head(self.conn())
        if current is None:
            return None
        seq, hash_ = current
        if self.last is not None and (self.last.seq, self.last.hash) == (seq, hash_):
            return None
        if self.last is not None and not holds(self.conn(), self.last):
            log.error(
                "the handoff log does not hold the anchored head (entry %d, hash %s…): it was rewritten,"
                " truncated or lost; its head is NOT anchored (run `lienthong audit verify`)",
                self.last.seq,
                self.last.hash[:16],
            )
            return None
        head = sign_head(self.signer, seq, hash_, self.now())
        await publish_head(self.bootstrap, head, prefix=self.prefix, **self.options)
        self.last = head
        return head

    def loop(self, interval_s: float) -> Callable[[], Coroutine[Any, Any, None]]:
        """The service loop: :meth:`once` every ``interval_s`` seconds; a failure is logged and the
        next round tries again."""

        async def run() -> None:
            while True:
                try:
                    await self.once()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("could not anchor the handoff log's head; trying again in %g s", interval_s)
                    self._read = False  # read the anchored head again: the broker may have missed a write
                await asyncio.sleep(interval_s)

        return run


def anchor_loops(
    store: TrackerStore, settings: KafkaSettings
) -> list[Callable[[], Coroutine[Any, Any, None]]]:
    """The tracker's anchoring loop, or none (said loudly) when it has no signing key: an unsigned
    head anchors nothing."""
    signer = signing.process_signer()
    if signer is None or signer.key.producer != ANCHOR_PRODUCER:
        log.warning("no tracker signing key: the handoff log's head is NOT anchored (audit.heads)")
        return []
    anchor = Anchor(
        lambda: store.conn,
        settings.bootstrap_servers,
        signer,
        prefix=settings.topic_prefix,
        **client_security_options(settings),
    )
    return [anchor.loop(AnchorSettings().audit_anchor_interval_s)]

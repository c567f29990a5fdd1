"""Producer signing keys (Ed25519) and the trust store of their public keys.

- A producer's **private key** is a JSON file ``<producer>.key.json`` (mode 0600) in a private
  directory that is never in the repository: ``$LIENTHONG_DATA_DIR/keys`` by default.
  A process signs with the file given by ``LIENTHONG_SIGNING_KEY``.
- The **trust store** is a directory of public keys, one JSON file per key, ``<key id>.json``:
  ``{"key_id", "producer", "algorithm": "Ed25519", "public_key" (base64), "created_at"}``.
  ``deploy/keys/`` is the trust store of a deployment; consumers read the one given by
  ``LIENTHONG_TRUST_STORE``. A key is trusted only for events of its own producer.
- **Rotation**: a new key pair replaces the producer's private key; its public key joins the trust
  store next to the old one, so events signed with either verify until the old public key is removed
  (``lienthong keys remove <key id>``), once no event signed with it is still in flight.

A key id is ``<producer>-<first 16 hex digits of SHA-256 of the public key>``: stable and unique.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

ALGORITHM = "Ed25519"
_PRODUCER = re.compile(r"[a-z][a-z0-9_.-]{0,63}")  # the envelope's producer name


class KeyFileError(Exception):
    """A key file or trust store entry that cannot be used."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id_for(producer: str, public: Ed25519PublicKey) -> str:
    return f"{producer}-{hashlib.sha256(public_bytes(public)).hexdigest()[:16]}"


def _check_producer(producer: str) -> None:
    if not _PRODUCER.fullmatch(producer):
        raise KeyFileError(f"not a producer name: {producer!r} (lower-case letters, digits, '_', '.', '-')")


@dataclass(frozen=True)
class SigningKey:
    """A producer's private key."""

    key_id: str
    producer: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()


@dataclass(frozen=True)
class TrustedKey:
    """A public key of the trust store."""

    key_id: str
    producer: str
    public_key: Ed25519PublicKey
    created_at: str


def _write_atomic(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(handle, mode)
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def private_key_path(private_dir: Path, producer: str) -> Path:
    return private_dir / f"{producer}.key.json"


def load_signing_key(path: Path) -> SigningKey:
    try:
        document = json.loads(path.read_text())
        raw = _unb64(document["private_key"])
        private = Ed25519PrivateKey.from_private_bytes(raw)
        producer = str(document["producer"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise KeyFileError(f"{path.name}: not a signing key file ({type(error).__name__})") from None
    return SigningKey(key_id_for(producer, private.public_key()), producer, private)


def _trusted_document(key: SigningKey, created_at: str) -> dict[str, str]:
    return {
        "key_id": key.key_id,
        "producer": key.producer,
        "algorithm": ALGORITHM,
        "public_key": _b64(public_bytes(key.public_key)),
        "created_at": created_at,
    }


def new_key(producer: str, private_dir: Path, trust_store: Path) -> SigningKey:
    """A fresh key pair for ``producer``: the private key replaces the producer's key file, the public
    key joins the trust store (keys already there stay trusted: that is rotation)."""
    _check_producer(producer)
    private = Ed25519PrivateKey.generate()
    key = SigningKey(key_id_for(producer, private.public_key()), producer, private)
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    document = {"key_id": key.key_id, "producer": producer, "algorithm": ALGORITHM, "private_key": _b64(raw)}
    # The trust store first: a key that signs before it is trusted would quarantine its events.
    _write_atomic(
        trust_store / f"{key.key_id}.json",
        json.dumps(_trusted_document(key, created_at), indent=2) + "\n",
        0o644,
    )
    _write_atomic(private_key_path(private_dir, producer), json.dumps(document, indent=2) + "\n", 0o600)
    return key


def ensure_key(producer: str, private_dir: Path, trust_store: Path) -> SigningKey:
    """The producer's key, created (and trusted) if it has none yet."""
    path = private_key_path(private_dir, producer)
    if path.exists():
        key = load_signing_key(path)
        if key.key_id not in load_trust_store(trust_store):
            created_at = datetime.now(UTC).isoformat(timespec="seconds")
            text = json.dumps(_trusted_document(key, created_at), indent=2) + "\n"
            _write_atomic(trust_store / f"{key.key_id}.json", text, 0o644)
        return key
    return new_key(producer, private_dir, trust_store)


def load_trust_store(directory: Path) -> dict[str, TrustedKey]:
    """Every public key of the trust store, by key id. A file that is not a valid entry is an error:
    a trust store is configuration, and a silently ignored key would quarantine a producer's events."""
    trusted: dict[str, TrustedKey] = {}
    if not directory.is_dir():
        raise KeyFileError(f"trust store {directory} is not a directory")
    for path in sorted(directory.glob("*.json")):
        try:
            document = json.loads(path.read_text())
            if document.get("algorithm", ALGORITHM) != ALGORITHM:
                raise ValueError("algorithm")
            public = Ed25519PublicKey.from_public_bytes(_unb64(document["public_key"]))
            producer = str(document["producer"])
            key_id = str(document["key_id"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise KeyFileError(f"{path.name}: not a trust store entry ({type(error).__name__})") from None
        if key_id != key_id_for(producer, public):
            raise KeyFileError(f"{path.name}: key id {key_id!r} does not match its public key and producer")
        trusted[key_id] = TrustedKey(key_id, producer, public, str(document.get("created_at", "")))
    return trusted


def remove_key(trust_store: Path, key_id: str) -> bool:
    """Stop trusting a key (the end of a rotation). True if it was trusted."""
    path = trust_store / f"{key_id}.json"
    if not path.exists() or path.parent != trust_store or "/" in key_id:
        return False
    path.unlink()
    return True

"""The encryption key ring: AES-256-GCM keys by key id, the first one current.

Where the keys come from (the first that is set):

- ``ROUTER_ENCRYPTION_KEY``: one base64 32-byte key, or ``kid:base64,kid:base64,...``;
- ``ROUTER_ENCRYPTION_KEY_FILE``: a file holding the same (commas or line breaks between keys).

The first key encrypts; every key decrypts. A key given without a kid gets ``k`` + the first 8
hex digits of its SHA-256 (stable, so the same key always has the same id, and 32 bits of a hash
of a random 256-bit key give nothing away). Rotating: put the new key first and keep the old
ones, run ``router connections rotate-key``, then remove the old keys.

A sealed blob is ``{"kid", "nonce", "ciphertext"}`` (base64); the associated data binds it to
the record it belongs to (tenant and integration), so a blob copied into another connection's
record does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from router import codes
from router.connections.model import ConnectionsError

KEY_ENV = "ROUTER_ENCRYPTION_KEY"
KEY_FILE_ENV = "ROUTER_ENCRYPTION_KEY_FILE"
KEY_BYTES = 32
NONCE_BYTES = 12  # 96-bit random nonces (NIST SP 800-38D §8.2.2); far below 2^32 writes per key here
_KID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class Sealed:
    """One encrypted value: the key id, the nonce and the ciphertext (with its GCM tag)."""

    kid: str
    nonce: bytes
    ciphertext: bytes

    def to_json(self) -> dict[str, str]:
        return {"kid": self.kid, "nonce": _b64(self.nonce), "ciphertext": _b64(self.ciphertext)}

    @classmethod
    def from_json(cls, doc: object) -> Sealed:
        """Parse a sealed blob; ConnectionsError ``connections.invalid_record`` if it is not one."""
        if not isinstance(doc, Mapping) or not all(isinstance(doc.get(k), str) for k in ("kid", "nonce", "ciphertext")):
            raise ConnectionsError("sealed secrets must be an object of kid, nonce, ciphertext",
                                   code=codes.CONNECTIONS_INVALID_RECORD)
        try:
            nonce = base64.b64decode(doc["nonce"], validate=True)
            ciphertext = base64.b64decode(doc["ciphertext"], validate=True)
        except (binascii.Error, ValueError):
            raise ConnectionsError("sealed secrets are not base64", code=codes.CONNECTIONS_INVALID_RECORD) from None
        if len(nonce) != NONCE_BYTES:
            raise ConnectionsError(f"a nonce must be {NONCE_BYTES} bytes", code=codes.CONNECTIONS_INVALID_RECORD)
        return cls(doc["kid"], nonce, ciphertext)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def key_id_of(key: bytes) -> str:
    """The id a key given without one gets: ``k`` + 8 hex digits of its SHA-256."""
    return "k" + hashlib.sha256(key).hexdigest()[:8]


def generate_key() -> str:
    """A new random key, base64, for ``ROUTER_ENCRYPTION_KEY``."""
    return _b64(secrets.token_bytes(KEY_BYTES))


def _decode_key(text: str, where: str) -> bytes:
    raw = text.strip()
    for decode in (lambda t: base64.b64decode(t, validate=True), base64.urlsafe_b64decode):
        try:
            key = decode(raw + "=" * (-len(raw) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(key) == KEY_BYTES:
            return key
    raise ConnectionsError(f"{where}: a key must be {KEY_BYTES} bytes in base64 (make one with "
                           "`openssl rand -base64 32`)", code=codes.CONNECTIONS_INVALID_KEY)


@dataclass(frozen=True)
class KeyRing:
    """Keys by id; ``current`` encrypts, all decrypt."""

    current: str
    keys: Mapping[str, bytes] = field(repr=False)

    @classmethod
    def parse(cls, text: str, where: str) -> KeyRing:
        """A ring from ``base64`` or ``kid:base64,kid:base64`` (commas or line breaks between keys)."""
        entries = [e.strip() for e in re.split(r"[,\n]", text) if e.strip()]
        if not entries:
            raise ConnectionsError(f"{where} holds no key", code=codes.CONNECTIONS_INVALID_KEY)
        keys: dict[str, bytes] = {}
        for n, entry in enumerate(entries, start=1):
            kid, sep, encoded = entry.partition(":")
            if not sep:
                kid, encoded = "", entry
            elif _KID.fullmatch(kid) is None:
                raise ConnectionsError(f"{where}: key {n} has an invalid id (^[A-Za-z0-9_.-]{{1,64}}$)",
                                       code=codes.CONNECTIONS_INVALID_KEY)
            key = _decode_key(encoded, f"{where}: key {n}")
            kid = kid or key_id_of(key)
            if kid in keys:
                raise ConnectionsError(f"{where}: key id {kid!r} appears twice", code=codes.CONNECTIONS_INVALID_KEY)
            keys[kid] = key
        return cls(next(iter(keys)), keys)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KeyRing | None:
        """The ring configured in ``env`` (default ``os.environ``), or None when no key is configured."""
        env = os.environ if env is None else env
        if env.get(KEY_ENV, "").strip():
            return cls.parse(env[KEY_ENV], KEY_ENV)
        path = env.get(KEY_FILE_ENV, "").strip()
        if not path:
            return None
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConnectionsError(f"{KEY_FILE_ENV}: cannot read {path}: {exc.strerror}",
                                   code=codes.CONNECTIONS_INVALID_KEY) from None
        return cls.parse(text, f"{KEY_FILE_ENV} ({path})")

    @classmethod
    def required(cls, env: Mapping[str, str] | None = None) -> KeyRing:
        """:meth:`from_env`, or ConnectionsError ``connections.no_key`` naming what to set."""
        ring = cls.from_env(env)
        if ring is None:
            raise ConnectionsError(f"no encryption key: set {KEY_ENV} (a base64 32-byte key) or {KEY_FILE_ENV}",
                                   code=codes.CONNECTIONS_NO_KEY)
        return ring

    def seal(self, plaintext: bytes, associated_data: bytes) -> Sealed:
        """Encrypt under the current key with a fresh random nonce."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return Sealed(self.current, nonce, AESGCM(self.keys[self.current]).encrypt(nonce, plaintext, associated_data))

    def open(self, sealed: Sealed, associated_data: bytes) -> bytes:
        """Decrypt; ConnectionsError ``connections.unknown_key`` or ``connections.undecryptable``."""
        key = self.keys.get(sealed.kid)
        if key is None:
            raise ConnectionsError(f"encrypted under key {sealed.kid!r}, which is not in the key ring; add it to "
                                   f"{KEY_ENV}", code=codes.CONNECTIONS_UNKNOWN_KEY)
        try:
            return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, associated_data)
        except InvalidTag:
            raise ConnectionsError(f"does not decrypt under key {sealed.kid!r}: altered, or moved from another "
                                   "connection", code=codes.CONNECTIONS_UNDECRYPTABLE) from None


def describe(ring: KeyRing) -> dict[str, Any]:
    """Key ids only (current first), for messages and ``--json`` output."""
    return {"current": ring.current, "key_ids": list(ring.keys)}

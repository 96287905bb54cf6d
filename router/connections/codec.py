"""A connection as a ``_connections`` record, and back: pure functions, no I/O.

Key ``tenant/integration``; value a JSON object whose clear part says what a person or the
health page may see (state, settings, the credential type, how many signing secrets) and whose
``sealed`` part holds everything secret, encrypted (:mod:`router.connections.keyring`) with the
associated data ``router.connection.v1\\0tenant\\0integration``. A tombstone (null value) deletes.

Value::

    {"format": 1, "tenant": "acme", "integration": "zendesk", "state": "active", "state_reason": "",
     "settings": {...}, "credential_type": "bearer" | null, "signing_secret_count": 2,
     "created_at_ms": ..., "updated_at_ms": ...,
     "sealed": {"kid": "k1", "nonce": "<base64>", "ciphertext": "<base64>"} | null}

The sealed plaintext is ``{"credentials": {...} | null, "signing_secrets": ["...", ...]}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from router import codes
from router.connections.keyring import KeyRing, Sealed
from router.connections.model import (
    Connection,
    ConnectionsError,
    Credentials,
    check_state,
    credentials_document,
    parse_credentials,
    parse_record_key,
    parse_settings,
    parse_signing_secrets,
    record_key,
)
from router.settings import Secret

FORMAT = 1
MAX_RECORD_BYTES = 1_000_000


def associated_data(tenant: str, integration: str) -> bytes:
    """What a sealed blob is bound to: this (tenant, integration) and this record format."""
    return b"router.connection.v1\0" + tenant.encode() + b"\0" + integration.encode()


def encode(connection: Connection, ring: KeyRing) -> tuple[bytes, bytes]:
    """Key and value of ``connection``, its secrets sealed under the ring's current key."""
    secret_doc = {"credentials": credentials_document(connection.credentials) if connection.credentials else None,
                  "signing_secrets": [s.reveal() for s in connection.signing_secrets]}
    has_secrets = connection.credentials is not None or bool(connection.signing_secrets)
    sealed = ring.seal(orjson.dumps(secret_doc), associated_data(connection.tenant, connection.integration)) \
        if has_secrets else None
    value = {
        "format": FORMAT,
        "tenant": connection.tenant,
        "integration": connection.integration,
        "state": connection.state,
        "state_reason": connection.state_reason,
        "settings": dict(connection.settings),
        "credential_type": connection.credentials.type if connection.credentials else None,
        "signing_secret_count": len(connection.signing_secrets),
        "created_at_ms": connection.created_at_ms,
        "updated_at_ms": connection.updated_at_ms,
        "sealed": sealed.to_json() if sealed else None,
    }
    return record_key(connection.tenant, connection.integration), orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def tombstone(tenant: str, integration: str) -> tuple[bytes, None]:
    """Key and (null) value that delete a connection."""
    return record_key(tenant, integration), None


def decode(key: bytes | None, value: bytes | None, ring: KeyRing) -> tuple[str, str, Connection | None]:
    """(tenant, integration, connection) of a record; the connection is None for a tombstone.

    ConnectionsError ``connections.invalid_record`` for a record that is not a connection,
    ``connections.unknown_key`` / ``connections.undecryptable`` for secrets that do not open.
    """
    tenant, integration = parse_record_key(key)
    if value is None:
        return tenant, integration, None
    if len(value) > MAX_RECORD_BYTES:
        raise ConnectionsError(f"record of {len(value)} bytes is larger than {MAX_RECORD_BYTES}",
                               code=codes.CONNECTIONS_INVALID_RECORD)
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ConnectionsError("record value is not JSON", code=codes.CONNECTIONS_INVALID_RECORD) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConnectionsError(f"record value is not a connection of format {FORMAT}",
                               code=codes.CONNECTIONS_INVALID_RECORD)
    if (doc.get("tenant"), doc.get("integration")) != (tenant, integration):
        raise ConnectionsError("record value names another connection than its key",
                               code=codes.CONNECTIONS_INVALID_RECORD)
    credentials: Credentials | None = None
    signing: tuple[Secret, ...] = ()
    sealed_doc = doc.get("sealed")
    kid = ""
    if sealed_doc is not None:
        sealed = Sealed.from_json(sealed_doc)
        kid = sealed.kid
        opened = _secret_doc(ring.open(sealed, associated_data(tenant, integration)))
        credentials = parse_credentials(opened["credentials"]) if opened.get("credentials") is not None else None
        signing = parse_signing_secrets(opened.get("signing_secrets", []))
    return tenant, integration, Connection(
        tenant=tenant, integration=integration, state=check_state(doc.get("state", "")),
        state_reason=_str(doc, "state_reason"), settings=parse_settings(doc.get("settings", {})),
        credentials=credentials, signing_secrets=signing, created_at_ms=_int(doc, "created_at_ms"),
        updated_at_ms=_int(doc, "updated_at_ms"), key_id=kid)


def _secret_doc(plaintext: bytes) -> Mapping[str, Any]:
    try:
        doc = orjson.loads(plaintext)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        raise ConnectionsError("decrypted secrets are not a JSON object", code=codes.CONNECTIONS_INVALID_RECORD)
    return doc


def _str(doc: Mapping[str, Any], name: str) -> str:
    value = doc.get(name, "")
    return value if isinstance(value, str) else ""


def _int(doc: Mapping[str, Any], name: str) -> int:
    value = doc.get(name, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0

"""Kafka header names (DESIGN §2): lowercase, ``router-`` prefixed, UTF-8 values."""

from __future__ import annotations

from collections.abc import Sequence

TENANT = "router-tenant"
SOURCE = "router-source"
EVENT_ID = "router-event-id"
INTEGRATION = "router-integration"
RECEIVED_AT = "router-received-at"
TRACEPARENT = "traceparent"
REPLAY_COUNT = "router-replay-count"

ERROR_CODE = "router-error-code"
ERROR_MESSAGE = "router-error-message"
ERROR_STAGE = "router-error-stage"
ORIGINAL_TOPIC = "router-original-topic"
ORIGINAL_PARTITION = "router-original-partition"
ORIGINAL_OFFSET = "router-original-offset"
ORIGINAL_TIMESTAMP = "router-original-timestamp"
CONSUMER_GROUP = "router-consumer-group"
ATTEMPTS = "router-attempts"
FIRST_FAILED_AT = "router-first-failed-at"
HTTP_STATUS = "router-http-status"
RESPONSE_BODY = "router-response-body"
ORIGINAL_SIZE = "router-original-size"  # on a stub: the value was too large to dead-letter as it was
ORIGINAL_SHA256 = "router-original-sha256"

ERROR_HEADERS = frozenset(
    {
        ERROR_CODE,
        ERROR_MESSAGE,
        ERROR_STAGE,
        ORIGINAL_TOPIC,
        ORIGINAL_PARTITION,
        ORIGINAL_OFFSET,
        ORIGINAL_TIMESTAMP,
        CONSUMER_GROUP,
        ATTEMPTS,
        FIRST_FAILED_AT,
        HTTP_STATUS,
        RESPONSE_BODY,
        ORIGINAL_SIZE,
        ORIGINAL_SHA256,
    }
)

KafkaHeaders = Sequence[tuple[str, bytes | None]]

# Identity values are indexed (dedupe and delivered keys, idempotency keys, partition keys), so
# they are bounded everywhere: the gateway refuses longer ones (413/400), the route worker
# dead-letters them (``validate.event_id_too_long``), the delivery worker too (``deliver.bad_header``).
MAX_EVENT_ID_CHARS = 256
MAX_ENTITY_KEY_CHARS = 512


def identity(headers: KafkaHeaders | None, name: str) -> str | None:
    """The value of identity header ``name`` (last one wins), checked by :func:`identity_value`."""
    raw: bytes | None = None
    for key, value in headers or ():
        if key.lower() == name:
            raw = value
    return identity_value(raw)


def identity_value(raw: bytes | None) -> str | None:
    """An identity header's value as text, or None when it is absent, empty, not valid UTF-8 or
    longer than :data:`MAX_EVENT_ID_CHARS`. Unlike :func:`to_dict`, nothing is replaced: two
    different invalid ids must never become one id."""
    if not raw or len(raw) > 4 * MAX_EVENT_ID_CHARS:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if len(text) <= MAX_EVENT_ID_CHARS else None


def to_dict(headers: KafkaHeaders | None) -> dict[str, str]:
    """Decode Kafka headers into a dict (last value wins); undecodable bytes are replaced, never raised."""
    out: dict[str, str] = {}
    for name, value in headers or ():
        out[name.lower()] = value.decode("utf-8", "replace") if value is not None else ""
    return out


def encode(headers: dict[str, str]) -> list[tuple[str, bytes]]:
    """Encode a dict of header strings into Kafka header tuples."""
    return [(k, v.encode()) for k, v in headers.items()]

"""The dead-letter ledger: each record is dead-lettered once, whatever crashes (DESIGN §4).

A worker writes a failed record to ``<topic>.dlq``, waits for the broker's acknowledgement,
*then* records it here, and only then commits its offset. When the worker dies between the
write and the commit, the record's next owner redelivers it and fails it again; the ledger says
it is already dead-lettered, so it is not written a second time. The window left is between the
broker's ack and this one Redis write (a round trip, not a batch): a kill exactly there still
writes a second copy, which ``router dlq ls`` and replay recognise by its original coordinates.

A ledger entry is (consumer group, topic, partition, offset, integration): the same record may
fail for two integrations (each has its own DLQ record), and two groups reading one topic each
report their own failures. Entries of one partition share a Redis hash whose key is hash-tagged
on the partition, so one batch touches one slot per partition (Redis Cluster), and expire
together after :data:`LEDGER_TTL_S` without new entries — far longer than any redelivery.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from router import headers as h
from router import redisconn

LEDGER_TTL_S = 7 * 24 * 3600
# A stub (DESIGN §2) fits any broker that takes a 128 KiB record.
STUB_VALUE_BYTES = 64 * 1024
STUB_KEY_BYTES = 1024
STUB_HEADER_BYTES = 1024
STUB_HEADERS = 64
RESPONSE_BODY_LIMIT = 1024  # bytes of a partner's answer kept in router-response-body


StubHeaders = list[tuple[str, str | bytes | None]]
Headers = list[tuple[str, bytes | None]]


def error_headers(headers: Sequence[tuple[str, bytes | None]], *, topic: str, partition: int, offset: int,
                  timestamp_ms: int, code: str, message: str, stage: str, group: str, integration: str | None,
                  now_ms: int, attempts: int = 1, http_status: int | None = None,
                  response_body: bytes | None = None) -> Headers:
    """A dead letter's headers, for every stage (DESIGN §2): the record's own headers untouched,
    then the error headers, replacing older ones but keeping the history of a replayed record —
    its first failure time and original topic, and its attempts counted on (``attempts`` is what
    this stage spent: 1 for a route failure, the HTTP attempts for a delivery)."""
    original = [(k, v) for k, v in headers if k not in h.ERROR_HEADERS]
    prev = h.to_dict(headers)
    raw_attempts = prev.get(h.ATTEMPTS, "")
    # Parsed defensively: a record already failing must reach the DLQ whatever its headers say.
    before = int(raw_attempts) if raw_attempts.isascii() and raw_attempts.isdigit() and len(raw_attempts) < 10 else 0
    extra = {
        h.ERROR_CODE: code,
        h.ERROR_MESSAGE: message[:1000],
        h.ERROR_STAGE: stage,
        h.ORIGINAL_TOPIC: prev.get(h.ORIGINAL_TOPIC, topic) if h.REPLAY_COUNT in prev else topic,
        h.ORIGINAL_PARTITION: str(partition),
        h.ORIGINAL_OFFSET: str(offset),
        h.ORIGINAL_TIMESTAMP: str(timestamp_ms),
        h.CONSUMER_GROUP: group,
        h.ATTEMPTS: str(before + max(1, attempts)),
        h.FIRST_FAILED_AT: prev.get(h.FIRST_FAILED_AT, str(now_ms)),
    }
    if http_status is not None:
        extra[h.HTTP_STATUS] = str(http_status)
        extra[h.RESPONSE_BODY] = (response_body or b"")[:RESPONSE_BODY_LIMIT].decode("utf-8", "replace")
    if integration is not None:
        original = [(k, v) for k, v in original if k != h.INTEGRATION]
        extra[h.INTEGRATION] = integration
    return original + [(k, v.encode()) for k, v in extra.items()]


def stub(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, str | bytes | None]]
         ) -> tuple[bytes | None, bytes, StubHeaders]:
    """A dead letter the broker refused as too large, cut to fit (DESIGN §2): the value's first
    :data:`STUB_VALUE_BYTES`, its size and SHA-256 (``router-original-size``, ``-sha256``), the
    headers (error headers first: they say why; each value cut to :data:`STUB_HEADER_BYTES`, at most
    :data:`STUB_HEADERS` of the others), and the key cut to :data:`STUB_KEY_BYTES`. A stub cannot be
    replayed: the rest of the value is gone (``router dlq replay`` says so)."""
    original = value or b""

    def cut(v: str | bytes | None) -> str | bytes | None:
        return v[:STUB_HEADER_BYTES] if v is not None and len(v) > STUB_HEADER_BYTES else v

    errors = [(k, cut(v)) for k, v in headers if k in h.ERROR_HEADERS]
    others = [(k, cut(v)) for k, v in headers if k not in h.ERROR_HEADERS][:STUB_HEADERS]
    marks: StubHeaders = [(h.ORIGINAL_SIZE, str(len(original)).encode()),
                          (h.ORIGINAL_SHA256, hashlib.sha256(original).hexdigest().encode())]
    short_key = key[:STUB_KEY_BYTES] if key is not None else None
    return short_key, original[:STUB_VALUE_BYTES], others + errors + marks


class DeadLetter(NamedTuple):
    """One record's failure for one integration ("" when it failed before an integration took it)."""

    topic: str
    partition: int
    offset: int
    integration: str


def ledger_key(prefix: str, group: str, topic: str, partition: int) -> str:
    """The hash holding one partition's dead-lettered offsets (hash-tagged on the partition)."""
    return f"{prefix}dlqw:{{{group}|{topic}|{partition}}}"


Slot = tuple[str, str]  # (hash key, field)


def slot(prefix: str, group: str, letter: DeadLetter) -> Slot:
    """Where one dead letter is recorded: its partition's hash, and a field per offset and integration."""
    return ledger_key(prefix, group, letter.topic, letter.partition), f"{letter.offset}|{letter.integration}"


def _by_key(slots: Iterable[Slot]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for key, f in slots:
        out[key].append(f)
    return out


def _found(slots: Sequence[Slot], grouped: dict[str, list[str]], replies: list[list[bytes | None]]) -> list[bool]:
    """Which slots the HMGET replies (one per ``grouped`` key, in order) found."""
    seen = {(key, f) for (key, fields), values in zip(grouped.items(), replies, strict=True)
            for f, v in zip(fields, values, strict=True) if v is not None}
    return [s in seen for s in slots]


def written(client: redisconn.Sync, slots: Sequence[Slot]) -> list[bool]:
    """For each slot, whether its dead letter was already written (one HMGET per partition)."""
    if not slots:
        return []
    grouped = _by_key(slots)
    pipe = client.pipeline(transaction=False)
    for key, fields in grouped.items():
        pipe.hmget(key, fields)
    return _found(slots, grouped, pipe.execute())


def record(client: redisconn.Sync, slots: Sequence[Slot], codes: Sequence[str]) -> None:
    """Record dead letters the broker acknowledged (before their offsets are committed)."""
    if not slots:
        return
    pipe = client.pipeline(transaction=False)
    for key, mapping in _mappings(slots, codes).items():
        pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
        pipe.expire(key, LEDGER_TTL_S)
    pipe.execute()


async def written_async(client: redisconn.Async, slots: Sequence[Slot]) -> list[bool]:
    """``written`` on an asyncio client (the delivery worker's)."""
    if not slots:
        return []
    grouped = _by_key(slots)
    async with client.pipeline(transaction=False) as pipe:
        for key, fields in grouped.items():
            pipe.hmget(key, fields)
        replies = await pipe.execute()
    return _found(slots, grouped, replies)


async def record_async(client: redisconn.Async, slots: Sequence[Slot], codes: Sequence[str]) -> None:
    """``record`` on an asyncio client."""
    if not slots:
        return
    async with client.pipeline(transaction=False) as pipe:
        for key, mapping in _mappings(slots, codes).items():
            pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
            pipe.expire(key, LEDGER_TTL_S)
        await pipe.execute()


def _mappings(slots: Sequence[Slot], codes: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for (key, f), code in zip(slots, codes, strict=True):
        out[key][f] = code
    return out

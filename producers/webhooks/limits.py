"""Bounds on what one webhook may put on a topic, as pure functions (documented in docs/gateway.md).

Every worker downstream walks the body, indexes the event id and entity key, and may have to
dead-letter the record with more headers added. The gateway therefore refuses, before any 202,
a body nested deeper than the source's ``max_depth``, an event id or entity key longer than
``router.headers.MAX_EVENT_ID_CHARS`` / ``MAX_ENTITY_KEY_CHARS``, and a Kafka record (value, key and
headers) larger than the topic takes. Tenant names are checked in ``router.spec.sources``
(``is_tenant_name``), since source specs name tenants too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# MAX_EVENT_ID_CHARS and MAX_ENTITY_KEY_CHARS live in router.headers: every worker holds records to them.
DEFAULT_MAX_RECORD_BYTES = 1024 * 1024  # Kafka's default message.max.bytes (1 MiB + 12) rounded down

# Kafka's v2 framing of one record alone in a batch: the batch header (61 bytes) and the record's own
# varints at their widest (length, attributes, timestamp and offset deltas, key and value lengths,
# header count: 36 bytes), then two varints per header. Counted in full, so a record this check
# passes fits the broker's limit even uncompressed.
RECORD_FRAMING_BYTES = 61 + 36
HEADER_FRAMING_BYTES = 10

# orjson stops at 1,024 levels with this message; such a body is too deep, not malformed.
PARSER_DEPTH_MESSAGE = "depth limit exceeded"


def nesting_exceeds(doc: object, limit: int, body: bytes | None = None) -> bool:
    """Is ``doc`` (parsed JSON: dicts, lists, scalars) nested more than ``limit`` containers deep?

    The top-level object or array is level 1; a scalar is level 0. The walk is iterative (no
    recursion to exhaust), visits each container at most once and stops at the first one past
    the limit. Given the raw ``body``, it is skipped altogether when the body has no more
    brackets than the limit allows (brackets inside strings only make that count larger, so the
    shortcut never passes a body that is too deep) — the common case, at C speed.
    """
    if not isinstance(doc, dict | list):
        return False
    if body is not None and body.count(b"[") + body.count(b"{") <= limit:
        return False
    if limit < 1:
        return True
    stack: list[tuple[dict[Any, Any] | list[Any], int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        for child in (value.values() if type(value) is dict else value):
            # orjson builds exact dicts and lists: `type() is` is both correct and the fast test.
            if type(child) is dict or type(child) is list:
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def record_size(key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]) -> int:
    """Bytes the Kafka record takes, framing included, before compression (what a broker limit is held to)."""
    size = RECORD_FRAMING_BYTES + len(value) + (len(key) if key is not None else 0)
    for name, header_value in headers:
        size += HEADER_FRAMING_BYTES + len(name.encode()) + len(header_value)
    return size

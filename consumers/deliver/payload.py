"""Avro records → JSON bodies, and the idempotency key of a record (stable across retries and re-routes).

A batch body is ``{"<batch_key>": [<record>, ...]}`` in compact JSON, so it is its records' own
JSON joined by commas inside a fixed envelope: each record is encoded once (``record_json``), its
size known before batching (``batch.max_bytes`` is a limit on the body as sent), and the body is
assembled from those bytes (``join_body``), byte for byte what ``batch_body`` writes."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from router.avrojson import json_scalar


def idempotency_key(tenant: str, integration: str, event_id: str) -> str:
    """The same event routed by the same integration for the same tenant always gets the same key."""
    return hashlib.sha256(f"{tenant}\x1f{integration}\x1f{event_id}".encode()).hexdigest()[:40]


def to_json(value: Any) -> bytes:
    """JSON for partner APIs: decimals as strings (no float rounding), times as ISO-8601 UTC."""
    return orjson.dumps(value, default=json_scalar, option=orjson.OPT_PASSTHROUGH_DATETIME)


def batch_body(records: list[dict[str, Any]], keys: list[str], batch_key: str, id_field: str) -> bytes:
    """``{"records": [{..., "idempotency_key": k}, ...]}``: each record carries its own key."""
    return join_body([record_json(r, k, id_field) for r, k in zip(records, keys, strict=True)], batch_key)


def record_json(record: dict[str, Any], key: str, id_field: str) -> bytes:
    """One record as it appears in a batch body: its JSON with its idempotency key in ``id_field``."""
    return to_json({**record, id_field: key})


def join_body(parts: list[bytes], batch_key: str) -> bytes:
    """The batch body holding ``parts`` (from ``record_json``), in order."""
    head, tail = envelope(batch_key)
    return head + b",".join(parts) + tail


def envelope(batch_key: str) -> tuple[bytes, bytes]:
    """What a batch body holds around its records: ``{"<batch_key>":[`` and ``]}``."""
    return b"{" + orjson.dumps(batch_key) + b":[", b"]}"


def body_size(part_sizes: list[int], batch_key: str) -> int:
    """The size in bytes of the batch body of records whose ``record_json`` sizes are given."""
    head, tail = envelope(batch_key)
    return len(head) + len(tail) + sum(part_sizes) + max(0, len(part_sizes) - 1)


def batch_idempotency_key(keys: list[str]) -> str:
    """The request's Idempotency-Key for a batch: stable for the same set of records."""
    return hashlib.sha256("\x1f".join(sorted(keys)).encode()).hexdigest()[:40]

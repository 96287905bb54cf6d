"""Avro records → JSON bodies, and the idempotency key of a record (stable across retries and re-routes)."""

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
    return to_json({batch_key: [{**r, id_field: k} for r, k in zip(records, keys, strict=True)]})


def batch_idempotency_key(keys: list[str]) -> str:
    """The request's Idempotency-Key for a batch: stable for the same set of records."""
    return hashlib.sha256("\x1f".join(sorted(keys)).encode()).hexdigest()[:40]

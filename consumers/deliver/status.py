"""What an HTTP answer means for the records in the request (the table in docs/delivery.md).

Pure: a status, headers and body in; a verdict per request (and per record for multi-status) out.
"""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson

RETRYABLE_4XX = frozenset({408, 425, 429})


class Verdict(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    TERMINAL = "terminal"  # → DLQ deliver.http_4xx
    UNAUTHORIZED = "unauthorized"  # → refresh credentials once, then needs_reconnect
    PARTIAL = "partial"  # multi-status: look at each record


@dataclass(frozen=True)
class RecordResult:
    """One record's own answer inside a multi-status response."""

    status: int
    retry_after_s: float | None = None
    body: bytes = b""  # the record's result object, as JSON: what its DLQ entry shows


@dataclass(frozen=True)
class Answer:
    verdict: Verdict
    status: int | None
    retry_after_s: float | None = None
    per_record: tuple[int, ...] = ()  # statuses by record index, for PARTIAL
    results: tuple[RecordResult, ...] = ()  # each record's own status, Retry-After and body, for PARTIAL


def classify_status(status: int) -> Verdict:
    """2xx delivered; 401 unauthorized; 408/425/429 and 5xx (except 501) retried; other 4xx terminal."""
    if 200 <= status < 300 and status != 207:
        return Verdict.DELIVERED
    if status == 401:
        return Verdict.UNAUTHORIZED
    if status in RETRYABLE_4XX or (500 <= status < 600 and status != 501):
        return Verdict.RETRY
    return Verdict.TERMINAL


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date; None if absent/invalid."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now_s)


def interpret(status: int, headers: dict[str, str], body: bytes, n_records: int, now_s: float) -> Answer:
    """The verdict for one response to a request carrying ``n_records`` records."""
    retry_after = parse_retry_after(headers.get("retry-after"), now_s)
    if status == 207:
        results = _multi_status(body, n_records, now_s)
        if results is not None:
            return Answer(Verdict.PARTIAL, status, retry_after, tuple(r.status for r in results), results)
        return Answer(Verdict.RETRY, status, retry_after)  # unreadable multi-status: retry the lot
    return Answer(classify_status(status), status, retry_after)


def _multi_status(body: bytes, n: int, now_s: float) -> tuple[RecordResult, ...] | None:
    """Each record's result from ``{"results": [{"index", "status", "retry_after"?, ...}]}``, or
    None when the body does not say what happened to every record (then the lot is retried)."""
    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    entries = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        return None
    results: list[RecordResult | None] = [None] * n
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            return None
        index = entry.get("index", i)
        status = entry.get("status")
        if not isinstance(index, int) or not 0 <= index < n or not isinstance(status, int):
            return None
        raw_after = entry.get("retry_after")
        after = parse_retry_after(str(raw_after) if isinstance(raw_after, int | str) else None, now_s)
        results[index] = RecordResult(status, after, orjson.dumps(entry))
    if any(r is None for r in results):
        return None  # a record without a result: we cannot know, retry it
    return tuple(r for r in results if r is not None)


def backoff_s(attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base·2^attempt))."""
    ceiling = min(cap_s, base_s * (2 ** min(attempt, 30)))
    return (rng or random).uniform(0, ceiling)

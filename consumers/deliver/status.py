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
class Answer:
    verdict: Verdict
    status: int | None
    retry_after_s: float | None = None
    per_record: tuple[int, ...] = ()  # statuses by record index, for PARTIAL


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
        per = _multi_status(body, n_records)
        if per is not None:
            return Answer(Verdict.PARTIAL, status, retry_after, per)
        return Answer(Verdict.RETRY, status, retry_after)  # unreadable multi-status: retry the lot
    return Answer(classify_status(status), status, retry_after)


def _multi_status(body: bytes, n: int) -> tuple[int, ...] | None:
    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, list):
        return None
    statuses = [0] * n
    for i, result in enumerate(results):
        if not isinstance(result, dict):
            return None
        index = result.get("index", i)
        status = result.get("status")
        if not isinstance(index, int) or not 0 <= index < n or not isinstance(status, int):
            return None
        statuses[index] = status
    if 0 in statuses:
        return None  # a record without a result: we cannot know, retry it
    return tuple(statuses)


def backoff_s(attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base·2^attempt))."""
    ceiling = min(cap_s, base_s * (2 ** min(attempt, 30)))
    return (rng or random).uniform(0, ceiling)

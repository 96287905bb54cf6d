"""Webhook signature schemes as pure functions: header strings and body bytes in, a verdict out.

Nothing here touches a socket or raises for bad input: any header string, however malformed,
yields ``None`` (verified) or a :class:`Rejection` with a stable code. Every comparison of a
signature is constant-time (``hmac.compare_digest``) and every active key is tried, so during
a rotation old and new secrets are accepted at once.

Schemes (the signed bytes, HMAC-SHA256):

- ``standard_webhooks``: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``
  (space-separated ``v1,<base64>`` entries) over ``id.timestamp.body``;
- ``stripe``: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`` over ``t.body``;
- ``github``: ``X-Hub-Signature-256: sha256=<hex>`` over the body;
- ``none``: accepted as is (trusted internal sources only).

Timestamps (standard_webhooks, stripe) more than ``tolerance_s`` away from ``now``, in either
direction, are refused as ``gateway.stale_timestamp``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from router import codes

BAD_SIGNATURE = codes.GATEWAY_BAD_SIGNATURE
STALE_TIMESTAMP = codes.GATEWAY_STALE_TIMESTAMP

STANDARD_ID = "webhook-id"
STANDARD_TIMESTAMP = "webhook-timestamp"
STANDARD_SIGNATURE = "webhook-signature"
STRIPE_SIGNATURE = "stripe-signature"
GITHUB_SIGNATURE = "x-hub-signature-256"

# Bounds the work one request can cause: entries beyond these are ignored.
MAX_SIGNATURES = 10
_MAX_TIMESTAMP_DIGITS = 12


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a request's signature was refused: a stable ``code``, a ``detail`` for the sender, the header."""

    code: str
    detail: str
    header: str


def _raw(value: str) -> bytes:
    # aiohttp decodes header bytes as UTF-8 with surrogateescape; this gives the sender's bytes back.
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate no HTTP parser produces: any bytes will do, never raise
        return value.encode("utf-8", "surrogatepass")


def _hmac(key: bytes, *parts: bytes) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.digest()


def _timestamp(raw: str, header: str, now: float, tolerance_s: float) -> int | Rejection:
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_TIMESTAMP_DIGITS:
        return Rejection(BAD_SIGNATURE, f"header {header} is not a Unix timestamp in seconds", header)
    ts = int(text)
    if abs(now - ts) > tolerance_s:
        return Rejection(STALE_TIMESTAMP, f"timestamp {ts} is more than {tolerance_s:g}s away from the "
                         f"gateway's clock ({int(now)}); sign with the current time", header)
    return ts


def _any_match(expected: Sequence[bytes], candidates: Sequence[bytes]) -> bool:
    matched = False
    for want in expected:
        for got in candidates:
            # No early exit: the time taken does not depend on which pair matched.
            matched |= hmac.compare_digest(want, got)
    return matched


def _missing(header: str) -> Rejection:
    return Rejection(BAD_SIGNATURE, f"header {header} is missing", header)


def _no_match(header: str) -> Rejection:
    return Rejection(BAD_SIGNATURE, f"no signature in header {header} matches the body with an active secret", header)


def verify_standard_webhooks(keys: Sequence[bytes], headers: Mapping[str, str], body: bytes, *, now: float,
                             tolerance_s: float = 300.0) -> Rejection | None:
    """Standard Webhooks: ``v1,<base64>`` entries of ``webhook-signature`` over ``id.timestamp.body``."""
    msg_id = headers.get(STANDARD_ID)
    if not msg_id:
        return _missing(STANDARD_ID)
    raw_ts = headers.get(STANDARD_TIMESTAMP)
    if not raw_ts:
        return _missing(STANDARD_TIMESTAMP)
    signature = headers.get(STANDARD_SIGNATURE)
    if not signature:
        return _missing(STANDARD_SIGNATURE)
    ts = _timestamp(raw_ts, STANDARD_TIMESTAMP, now, tolerance_s)
    if isinstance(ts, Rejection):
        return ts
    candidates: list[bytes] = []
    for entry in signature.split()[:MAX_SIGNATURES]:
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue  # other versions (v1a: asymmetric) are not ours to check
        try:
            candidates.append(base64.b64decode(_raw(encoded), validate=True))
        except (binascii.Error, ValueError):
            continue
    if not candidates:
        return Rejection(BAD_SIGNATURE, f"header {STANDARD_SIGNATURE} has no v1,<base64> entry", STANDARD_SIGNATURE)
    # The timestamp is signed as sent: digits only, checked above.
    prefix = _raw(msg_id) + b"." + raw_ts.strip().encode() + b"."
    expected = [_hmac(key, prefix, body) for key in keys]
    return None if _any_match(expected, candidates) else _no_match(STANDARD_SIGNATURE)


def verify_stripe(keys: Sequence[bytes], headers: Mapping[str, str], body: bytes, *, now: float,
                  tolerance_s: float = 300.0) -> Rejection | None:
    """Stripe-style: ``t=<unix>,v1=<hex>`` (several ``v1`` allowed) over ``t.body``."""
    header = headers.get(STRIPE_SIGNATURE)
    if not header:
        return _missing(STRIPE_SIGNATURE)
    raw_ts: str | None = None
    candidates: list[bytes] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and raw_ts is None:
            raw_ts = value
        elif name == "v1" and len(candidates) < MAX_SIGNATURES:
            candidates.append(_raw(value.lower()))
    if raw_ts is None:
        return Rejection(BAD_SIGNATURE, f"header {STRIPE_SIGNATURE} has no t=<unix timestamp>", STRIPE_SIGNATURE)
    if not candidates:
        return Rejection(BAD_SIGNATURE, f"header {STRIPE_SIGNATURE} has no v1=<hex> signature", STRIPE_SIGNATURE)
    ts = _timestamp(raw_ts, STRIPE_SIGNATURE, now, tolerance_s)
    if isinstance(ts, Rejection):
        return ts
    prefix = raw_ts.strip().encode() + b"."
    expected = [_hmac(key, prefix, body).hex().encode() for key in keys]
    return None if _any_match(expected, candidates) else _no_match(STRIPE_SIGNATURE)


def verify_github(keys: Sequence[bytes], headers: Mapping[str, str], body: bytes) -> Rejection | None:
    """GitHub-style: ``X-Hub-Signature-256: sha256=<hex>`` over the body."""
    header = headers.get(GITHUB_SIGNATURE)
    if not header:
        return _missing(GITHUB_SIGNATURE)
    algorithm, _, digest = header.strip().partition("=")
    if algorithm != "sha256" or not digest:
        return Rejection(BAD_SIGNATURE, f"header {GITHUB_SIGNATURE} is not sha256=<hex>", GITHUB_SIGNATURE)
    expected = [_hmac(key, body).hex().encode() for key in keys]
    return None if _any_match(expected, [_raw(digest.lower())]) else _no_match(GITHUB_SIGNATURE)


def verify(scheme: str, keys: Sequence[bytes], headers: Mapping[str, str], body: bytes, *, now: float,
           tolerance_s: float = 300.0) -> Rejection | None:
    """Check a request under ``scheme``; ``None`` when it is authentic, else the Rejection.

    ``headers`` must look names up case-insensitively (aiohttp's request headers do) or be
    keyed by lowercase names.
    """
    if scheme == "standard_webhooks":
        return verify_standard_webhooks(keys, headers, body, now=now, tolerance_s=tolerance_s)
    if scheme == "stripe":
        return verify_stripe(keys, headers, body, now=now, tolerance_s=tolerance_s)
    if scheme == "github":
        return verify_github(keys, headers, body)
    if scheme == "none":
        return None
    return Rejection(BAD_SIGNATURE, f"unknown signature scheme {scheme!r}", "")

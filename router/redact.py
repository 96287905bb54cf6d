"""Readable, redacted DLQ values: what `router dlq show` prints instead of raw bytes (pure).

The fields to mask come from ``ROUTER_REDACT_FIELDS`` (comma-separated; unset or empty means
:data:`DEFAULT_FIELDS`). A key is sensitive when, normalised (lower case, ``-`` and camelCase
boundaries as ``_``), it equals a listed field or ends with ``_<field>``: with ``email`` listed,
``email``, ``Email``, ``requester_email`` and ``requesterEmail`` are masked, ``email_verified`` is
not. The whole value under a sensitive key becomes ``"***"``, whatever its type, at any depth of
objects and arrays.

Values that are not JSON (a ``decode.invalid_json`` body is JSON-ish more often than not) are
shown as escaped text, truncated, after a best-effort mask of ``"field": value`` and
``field=value`` pairs, so a half-valid body does not leak what a valid one would hide.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import orjson

from router.avrojson import json_scalar

DEFAULT_FIELDS = frozenset({"email", "phone", "phone_number", "ssn", "password", "token", "secret",
                            "authorization"})
ENV_NAME = "ROUTER_REDACT_FIELDS"
MASK = "***"
TEXT_LIMIT = 500
REDACT_MARGIN = 1024  # characters past the shown text still redacted, so a credential across the cut is masked
MAX_DEPTH = 64  # containers shown; deeper ones become TOO_DEEP
TOO_DEEP = "… (nested deeper than 64 levels)"

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def fields_from_env(env: Mapping[str, str]) -> frozenset[str]:
    """The fields to mask, from ``ROUTER_REDACT_FIELDS`` in ``env``."""
    raw = env.get(ENV_NAME, "")
    fields = frozenset(normalise(part) for part in raw.split(",") if part.strip())
    return fields or DEFAULT_FIELDS


def normalise(key: str) -> str:
    """``requesterEmail`` / ``Requester-Email`` → ``requester_email``."""
    return _CAMEL.sub("_", key.strip()).replace("-", "_").lower()


def is_sensitive(key: str, fields: frozenset[str]) -> bool:
    """True when ``key`` names one of ``fields`` (equal, or ending with ``_<field>``)."""
    name = normalise(key)
    return any(name == f or name.endswith("_" + f) for f in fields)


def redact(doc: Any, fields: frozenset[str], depth: int = 0) -> Any:
    """A copy of ``doc`` with the value of every sensitive key replaced by ``"***"``; containers
    nested deeper than :data:`MAX_DEPTH` are shown as :data:`TOO_DEEP` (hostile input is normal)."""
    if isinstance(doc, dict):
        if depth >= MAX_DEPTH:
            return TOO_DEEP
        return {k: MASK if isinstance(k, str) and is_sensitive(k, fields) else redact(v, fields, depth + 1)
                for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        if depth >= MAX_DEPTH:
            return TOO_DEEP
        return [redact(v, fields, depth + 1) for v in doc]
    if isinstance(doc, str):
        return mask_credentials(doc)
    return doc


@cache
def _text_pattern(fields: frozenset[str]) -> re.Pattern[str]:
    names = "|".join(sorted((re.escape(f) for f in fields), key=len, reverse=True))
    # key: optionally quoted, optionally prefixed (requester_email); value: a (maybe unterminated)
    # quoted string, or a bare token up to a separator.
    return re.compile(
        rf"""(?P<key>(?<![\w-])(?P<q>["']?)(?:[\w-]*[_-])?(?:{names})(?P=q)\s*[:=]\s*)"""
        r"""(?P<value>"(?:[^"\\]|\\.)*"?|'[^']*'?|[^\s,;&}\]]+)""",
        re.IGNORECASE,
    )


# Credential shapes masked whole wherever free text is shown, whatever key (if any) they sit
# under: an Authorization header's whole value (scheme and credentials), a scheme followed by a
# credential, provider-style secret keys (sk_live_…, rk_test_…, tok_live_…, whsec_…), JWTs, and
# secret=value pairs in query strings and forms.
_CREDENTIALS = re.compile(
    r"""(?P<auth>(?<![\w-])(?:proxy-)?authorization["']?\s*[:=]\s*)(?:"[^"\r\n]*"?|'[^'\r\n]*'?|[^\r\n,;&}\]]+)"""
    r"""|(?P<scheme>\b(?:bearer|basic|token|digest)\s+)(?=[A-Za-z._~+/=-]*[0-9])[A-Za-z0-9._~+/=-]{6,}"""
    r"""|\b(?:sk|pk|rk|tok|key|whsec|secret)_(?:live|test|prod)?_?[A-Za-z0-9]{6,}"""
    r"""|\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"""
    r"""|(?P<pair>(?<![\w-])(?:client_secret|password|passwd|api_key|apikey|access_token|refresh_token|token)"""
    r"""\s*=\s*)[^\s&,;]+""",
    re.IGNORECASE,
)


# Anchored at the start of a token: unanchored, a long run of word characters without an "@" was
# scanned again from every position (quadratic: a 2 MB record hung the route worker's health write).
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def _mask_credential(m: re.Match[str]) -> str:
    prefix = m.group("auth") or m.group("scheme") or m.group("pair") or ""
    return prefix + MASK


def mask_credentials(text: str) -> str:
    """``text`` with every known credential shape replaced by ``***`` (see ``_CREDENTIALS``)."""
    return _CREDENTIALS.sub(_mask_credential, text)


def redact_text(text: str, fields: frozenset[str]) -> str:
    """Mask credential shapes, then ``"field": value`` and ``field=value`` pairs, in free text
    (a value that is not valid JSON, an error message, a partner's answer): the one redaction
    of text for every surface that shows it (health page and its JSON, state reasons, logs,
    ``router dlq show``)."""
    text = mask_credentials(text)
    if "email" in fields:
        text = _EMAIL.sub(MASK, text)
    if not fields:
        return text
    return _text_pattern(fields).sub(lambda m: m.group("key") + (f'"{MASK}"' if m.group("value")[:1] in "\"'"
                                                                 else MASK), text)


def escape_text(text: str) -> str:
    """Non-printable characters as escapes (``\\n``, ``\\x00``, ``\\u200b``), the rest as is."""
    out = []
    for ch in text:
        if ch.isprintable() or ch == " ":
            out.append(ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… (+{len(text) - limit} chars)"


def jsonable(value: Any, depth: int = 0) -> Any:
    """Avro-decoded values (datetimes, decimals, bytes) as JSON-friendly ones (depth-bounded)."""
    if isinstance(value, dict | list | tuple) and depth >= MAX_DEPTH:
        return TOO_DEEP
    if isinstance(value, dict):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, bytes):
        return "base64:" + base64.b64encode(value).decode()  # marked: a person reads this
    try:
        return json_scalar(value)
    except TypeError:
        pass
    return value


ValueKind = Literal["json", "avro", "text", "empty"]
AvroDecoder = Callable[[bytes], Any]  # returns the decoded record, or raises ValueError


@dataclass(frozen=True)
class ReadableValue:
    """A record value as a person may see it: redacted JSON, or escaped and truncated text."""

    kind: ValueKind
    doc: Any  # JSON-able (json, avro); the escaped text (text); None (empty)
    size: int  # bytes in the record

    def short(self, limit: int = 300) -> str:
        """One line for a table cell."""
        if self.kind == "empty":
            return "(no value)"
        text = self.doc if self.kind == "text" else orjson.dumps(self.doc).decode()
        return truncate(text, limit)


def readable(value: bytes | None, fields: frozenset[str], *, avro: AvroDecoder | None = None,
             text_limit: int = TEXT_LIMIT) -> ReadableValue:
    """Decode ``value`` for display: JSON, else registry-framed Avro (when ``avro`` is given), else text."""
    if value is None:
        return ReadableValue("empty", None, 0)
    size = len(value)
    if avro is not None and value[:1] == b"\x00" and size >= 5:
        try:
            return ReadableValue("avro", redact(jsonable(avro(value)), fields), size)
        except ValueError:
            pass  # not decodable after all: shown as text below
    try:
        return ReadableValue("json", redact(orjson.loads(value), fields), size)
    except orjson.JSONDecodeError:
        pass
    # Only what can be shown is redacted (plus a margin, so a credential across the cut is still
    # masked whole): the cost stays bounded whatever the record's size.
    window = 4 * text_limit + REDACT_MARGIN
    text = escape_text(redact_text(value[:window].decode("utf-8", "backslashreplace"), fields))
    if size > window:  # cut before redaction: say how much of the record is not shown, in bytes
        return ReadableValue("text", f"{text[:text_limit]}… (+{size - min(len(text), text_limit)} bytes)", size)
    return ReadableValue("text", truncate(text, text_limit), size)

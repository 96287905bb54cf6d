"""Which DLQ records a `router dlq show|replay` run is about: a pure, frozen filter.

A record matches when every given criterion matches (AND); a criterion given several times
matches any of its values (OR). Codes accept shell-style globs (``map.*``). Times are epoch
milliseconds compared with the DLQ record's Kafka timestamp (when it was dead-lettered):
``since`` inclusive, ``until`` exclusive.

``fingerprint()`` names the filter in the replay cursor's group, so it must be stable across
processes and versions: it hashes a canonical JSON of the criteria (sorted, absolute times).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase

import orjson

from router import headers as h
from router.errors import ConfigError

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}


def parse_time(text: str, now_ms: int) -> int:
    """Epoch ms from ``text``: ISO-8601 (UTC if no zone), epoch ms digits, or a duration ago (``90m``, ``2h``, ``7d``).

    Raises ConfigError with an example for anything else.
    """
    raw = text.strip()
    if raw.isascii() and raw.isdigit():
        return int(raw)
    rel = _RELATIVE.match(raw)
    if rel:
        return now_ms - int(float(rel.group(1)) * _UNIT_MS[rel.group(2)])
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise ConfigError(f"{text!r} is not a time; use ISO-8601 (2026-11-20T10:00:00Z), epoch ms, "
                          "or a duration ago (30m, 2h, 7d)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _values(items: Iterable[str] | None) -> frozenset[str]:
    """Split comma-separated option values, drop blanks."""
    out: set[str] = set()
    for item in items or ():
        out.update(part.strip() for part in item.split(",") if part.strip())
    return frozenset(out)


@dataclass(frozen=True)
class DlqFilter:
    """The record criteria of one `router dlq show|replay` invocation (empty = every record)."""

    codes: frozenset[str] = frozenset()
    tenants: frozenset[str] = frozenset()
    integrations: frozenset[str] = frozenset()
    event_ids: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None

    @classmethod
    def from_options(cls, *, codes: Iterable[str] | None = None, tenants: Iterable[str] | None = None,
                     integrations: Iterable[str] | None = None, event_ids: Iterable[str] | None = None,
                     since: str | None = None, until: str | None = None, now_ms: int) -> DlqFilter:
        """From CLI option values (repeatable; comma-separated except event ids); times resolved at ``now_ms``."""
        since_ms = parse_time(since, now_ms) if since else None
        until_ms = parse_time(until, now_ms) if until else None
        if since_ms is not None and until_ms is not None and until_ms <= since_ms:
            raise ConfigError("--until must be later than --since")
        # Event ids are partner data and may contain commas: they are only repeatable, never split.
        ids = frozenset(e for e in (event_ids or ()) if e)
        return cls(_values(codes), _values(tenants), _values(integrations), ids, since_ms, until_ms)

    def matches(self, headers: Mapping[str, str], timestamp_ms: int) -> bool:
        """True when the record (decoded headers, Kafka timestamp in ms) passes every criterion."""
        if self.since_ms is not None and timestamp_ms < self.since_ms:
            return False
        if self.until_ms is not None and timestamp_ms >= self.until_ms:
            return False
        if self.codes:
            code = headers.get(h.ERROR_CODE, "")
            if not any(fnmatchcase(code, pattern) for pattern in self.codes):
                return False
        return all(
            not wanted or headers.get(name) in wanted
            for name, wanted in ((h.TENANT, self.tenants), (h.INTEGRATION, self.integrations),
                                 (h.EVENT_ID, self.event_ids))
        )

    @property
    def is_empty(self) -> bool:
        """True when every record matches."""
        return self == DlqFilter()

    def canonical(self) -> dict[str, object]:
        """The criteria as plain, ordered data (what the fingerprint hashes; also shown to users)."""
        return {
            "codes": sorted(self.codes),
            "tenants": sorted(self.tenants),
            "integrations": sorted(self.integrations),
            "event_ids": sorted(self.event_ids),
            "since_ms": self.since_ms,
            "until_ms": self.until_ms,
        }

    def fingerprint(self) -> str:
        """16 hex digits, equal for equal criteria whatever the option order or repetition."""
        return hashlib.sha256(orjson.dumps(self.canonical(), option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]

    def describe(self) -> str:
        """A short human summary, e.g. ``code=map.* tenant=acme``, or ``all records``."""
        parts = [f"{label}={','.join(sorted(values))}" for label, values in
                 (("code", self.codes), ("tenant", self.tenants), ("integration", self.integrations),
                  ("event-id", self.event_ids)) if values]
        if self.since_ms is not None:
            parts.append(f"since={iso_ms(self.since_ms)}")
        if self.until_ms is not None:
            parts.append(f"until={iso_ms(self.until_ms)}")
        return " ".join(parts) or "all records"


def iso_ms(ms: int) -> str:
    """Epoch ms as ISO-8601 UTC with millisecond precision (``2026-11-20T10:15:00.000Z``)."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

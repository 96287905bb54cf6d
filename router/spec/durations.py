"""Durations in specs: ``500ms``, ``10s``, ``5m``, ``24h``, ``7d`` (or a number of seconds)."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
PATTERN = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d)$"
_RE = re.compile(PATTERN)


def parse_duration(value: str | float) -> float:
    """Seconds in ``value``; raise ValueError naming the accepted forms."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _RE.match(str(value).strip())
    if not match:
        raise ValueError(f"invalid duration {value!r}: use a number and a unit, e.g. 500ms, 10s, 5m, 24h, 7d")
    return float(str(value)[: match.start(2)]) * _UNITS[match.group(2)]

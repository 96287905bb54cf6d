"""Avro-decoded values as JSON: one set of rules for partner bodies and for people reading DLQs.

Decimals become strings (no float rounding), datetimes ISO-8601 UTC with milliseconds
(``2026-11-20T10:15:00.000Z``), dates ISO, bytes base64.
"""

from __future__ import annotations

import base64
import decimal
from datetime import UTC, date, datetime
from typing import Any


def json_scalar(value: Any) -> Any:
    """The JSON form of one Avro scalar that JSON has no type for; TypeError for anything else."""
    if type(value) is datetime and value.tzinfo is UTC:  # what Avro timestamps decode to: the hot case
        return value.isoformat(timespec="milliseconds")[:-6] + "Z"  # drops "+00:00"
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} has no JSON form")

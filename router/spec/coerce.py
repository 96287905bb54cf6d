"""Value coercions named by ``as:`` in a mapping field. Each raises MappingError(map.type_error)."""

from __future__ import annotations

import decimal
import math
import reprlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from router import codes
from router.errors import MappingError

Coercion = Callable[[Any], Any]

# Epoch values below this are taken as seconds, above as milliseconds (year 5138 in seconds).
_SECONDS_LIMIT = 100_000_000_000


_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxstring, _SHOW.maxother, _SHOW.maxlong = 3, 50, 50, 50


def shown(value: Any, limit: int = 60) -> str:
    """A short repr of a record's value for an error message: bounded in depth and length, and
    safe for any input (a 5,000-digit int or 1,000 nested lists would make ``repr`` raise)."""
    if type(value) is int and value.bit_length() > 160:
        return f"<int of {value.bit_length()} bits>"
    try:
        text = _SHOW.repr(value)
    except (ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _fail(value: Any, target: str) -> MappingError:
    shown_value = shown(value)
    return MappingError(f"cannot convert {shown_value} ({type(value).__name__}) to {target}", code=codes.MAP_TYPE_ERROR)


def to_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | decimal.Decimal):
        return str(value)
    raise _fail(value, "string")


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise _fail(value, "int")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, decimal.Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                f = float(value)
            except ValueError:
                raise _fail(value, "int") from None
            if f.is_integer():
                return int(f)
    raise _fail(value, "int")


def to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise _fail(value, "float")
    if isinstance(value, int | float | decimal.Decimal):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            raise _fail(value, "float") from None
    else:
        raise _fail(value, "float")
    if not math.isfinite(out):
        raise _fail(value, "a finite float")
    return out


_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise _fail(value, "boolean")


def to_timestamp_ms(value: Any) -> int:
    """Epoch ms from epoch seconds/ms numbers or ISO-8601 strings (``Z`` or offset; naive = UTC)."""
    if type(value) is str and value[4:5] == "-":
        # The hot case, an extended-format ISO time ("2026-11-20T10:15:00Z"); no number has "-" there.
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass  # e.g. surrounding spaces or a lower-case "z": the general path below
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return int(moment.timestamp() * 1000)
    if isinstance(value, bool):
        raise _fail(value, "timestamp_ms")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise _fail(value, "timestamp_ms")
        return int(value * 1000) if abs(value) < _SECONDS_LIMIT else int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            return to_timestamp_ms(number)
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise _fail(value, "timestamp_ms (ISO-8601 or epoch)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    raise _fail(value, "timestamp_ms")


def to_iso8601(value: Any) -> str:
    ms = to_timestamp_ms(value)
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decimal_coercion(scale: int | None) -> Coercion:
    """A coercion to Decimal quantized to the Avro field's scale (half-even, as accountants expect)."""
    quantum = decimal.Decimal(1).scaleb(-(scale or 0))

    def to_decimal(value: Any) -> decimal.Decimal:
        if isinstance(value, bool):
            raise _fail(value, "decimal")
        try:
            d = value if isinstance(value, decimal.Decimal) else decimal.Decimal(str(value).strip())
            if not d.is_finite():
                raise _fail(value, "a finite decimal")
            return d.quantize(quantum, rounding=decimal.ROUND_HALF_EVEN)
        except (decimal.InvalidOperation, ValueError):
            raise _fail(value, "decimal") from None

    return to_decimal


SIMPLE: dict[str, Coercion] = {
    "string": to_string,
    "int": to_int,
    "long": to_int,
    "float": to_float,
    "double": to_float,
    "boolean": to_bool,
    "timestamp_ms": to_timestamp_ms,
    "iso8601": to_iso8601,
}


_INT64 = 2**63 - 1
_VERSION_CHARS = 64


def version_number(value: Any) -> float:
    """An event's ``version`` as a comparable number: numbers as they are, ISO times as epoch ms.

    Only finite numbers within the int64 range are versions: ``Infinity`` would set an entity's
    watermark beyond every later event for ever, and ``NaN`` compares with nothing."""
    if type(value) is int or type(value) is float:  # the hot case first (bool is not int here)
        if -_INT64 <= value <= _INT64:  # False for NaN and the infinities too
            return float(value)
        raise _fail(value, "a finite version within the int64 range")
    if isinstance(value, bool):
        raise _fail(value, "a version (number or ISO-8601 time)")
    if isinstance(value, int | float):
        number = float(value) if -_INT64 <= value <= _INT64 else math.inf
    elif isinstance(value, str):
        if len(value) > _VERSION_CHARS:
            raise _fail(value[:40], f"a version of at most {_VERSION_CHARS} characters")
        try:
            number = float(value)
        except ValueError:
            return float(to_timestamp_ms(value))
    else:
        raise _fail(value, "a version (number or ISO-8601 time)")
    if not math.isfinite(number) or not -_INT64 <= number <= _INT64:
        raise _fail(value if not isinstance(value, str) else value[:40],
                    "a finite version within the int64 range")
    return number

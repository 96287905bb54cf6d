"""Avro binary pieces for the code router.spec.avro_writer generates: varints from tables,
floats, booleans and decimals exactly as fastavro writes them.

Each function returns the bytes of one value, or raises :class:`_Defer` when the value is one the
fast path does not judge (wrong type, out of range): the writer then hands the record to fastavro.
"""

from __future__ import annotations

import decimal
import struct

_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_TABLE = 1 << 14  # varints of 0 .. 2**14-1 come from a table


class _Defer(Exception):
    """Raised by generated code: this value is fastavro's to judge."""


# ---- varints ---------------------------------------------------------------------------------


def _uvarint_loop(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_T14 = tuple(_uvarint_loop(i) for i in range(_TABLE))  # complete varint of i
_C14 = tuple(bytes(((i & 0x7F) | 0x80, (i >> 7) | 0x80)) for i in range(_TABLE))  # 14 bits, more follow
_ZZ = tuple(_T14[(i << 1) ^ (i >> 63)] for i in range(-64, 8192))  # zigzag varint of i, at i + 64
_LEN = _ZZ[64:]  # a length n (an Avro long, so zigzag) for n < 8192


def _uvarint(n: int) -> bytes:
    """Varint of 0 <= n < 2**64, 14 bits per table lookup."""
    if n < 0x4000:
        return _T14[n]
    if n < 0x10000000:
        return _C14[n & 0x3FFF] + _T14[n >> 14]
    if n < 0x40000000000:
        return _C14[n & 0x3FFF] + _C14[(n >> 14) & 0x3FFF] + _T14[n >> 28]
    if n < 0x100000000000000:
        return _C14[n & 0x3FFF] + _C14[(n >> 14) & 0x3FFF] + _C14[(n >> 28) & 0x3FFF] + _T14[n >> 42]
    return _uvarint_loop(n)


def _long(v: object) -> bytes:
    """An Avro long the way fastavro writes an exact int (a C long long): in range or not at all."""
    if type(v) is int:
        if 0 <= v < 0x20000000000:  # zigzag below 2**42: at most three table lookups
            n = v + v
            if n < 0x4000:
                return _T14[n]
            if n < 0x10000000:
                return _C14[n & 0x3FFF] + _T14[n >> 14]
            return _C14[n & 0x3FFF] + _C14[(n >> 14) & 0x3FFF] + _T14[n >> 28]
        if _LONG_MIN <= v <= _LONG_MAX:
            return _uvarint((v << 1) ^ (v >> 63))
    raise _Defer


def _int32(v: object) -> bytes:
    """An int inside a union branch, where fastavro's validation wants the 32-bit range."""
    if type(v) is not int or not _INT_MIN <= v <= _INT_MAX:
        raise _Defer
    return _uvarint((v << 1) ^ (v >> 63))


def _length(n: int) -> bytes:
    return _LEN[n] if n < 8192 else _uvarint(n << 1)


# ---- floats and decimals ---------------------------------------------------------------------

_PACK_D = struct.Struct("<d").pack
_PACK_F = struct.Struct("<f").pack
_F32_INF = (_PACK_F(float("inf")), _PACK_F(float("-inf")))


def _double(v: object) -> bytes:
    if type(v) is not float and type(v) is not int:
        raise _Defer
    return _PACK_D(v)


def _float(v: object) -> bytes:
    """A C ``(float)`` cast, as fastavro does: out-of-range doubles become infinities, not errors."""
    if type(v) is not float and type(v) is not int:
        raise _Defer
    try:
        return _PACK_F(v)
    except OverflowError:
        x = float(v)  # a huge int still raises, as in fastavro
        return _F32_INF[x < 0]


def _bool_strict(v: object) -> bytes:
    if v is True:
        return b"\x01"
    if v is False:
        return b"\x00"
    raise _Defer


def _bytes_decimal(d: decimal.Decimal, scale: int, precision: int) -> bytes:
    """fastavro's ``prepare_bytes_decimal``, read off ``str(d)`` instead of a loop over its digits.

    Plain notation only: an exponent form, NaN or Infinity fails ``int()`` and the record goes to fastavro.
    """
    whole, _, fraction = str(d).partition(".")
    unscaled = int(whole + fraction) if fraction else int(whole)
    places = len(fraction)  # the exponent is -places
    if d.adjusted() + places >= precision or places > scale:
        raise _Defer  # fastavro: "decimal precision is bigger than allowed" / "scale ... does not match"
    if places != scale:
        unscaled *= 10 ** (scale - places)
    if unscaled >= 0:
        return unscaled.to_bytes((unscaled.bit_length() + 8) >> 3)
    size = ((-unscaled).bit_length() + 8) >> 3  # fastavro sizes by the magnitude, so -128 takes 2 bytes
    return (unscaled + (1 << (size << 3))).to_bytes(size)

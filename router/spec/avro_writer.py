"""Avro binary encoding compiled per schema: fastavro's bytes, about 3x faster.

``compile_writer(schema)`` turns a raw Avro schema into ``write(record) -> bytes`` returning exactly
what ``fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)`` writes.

How: fastavro parses the schema first (an invalid schema fails with fastavro's own error; names,
namespaces and defaults resolve exactly as fastavro resolves them). From the parsed schema one Python
function is generated and ``exec``-ed once. Schema-supplied values (field names, defaults, symbols,
sizes) reach the generated code only as constants bound by name (``_K0``, ``_K1``, ...), never as
source text. Generated code appends byte strings to a list and joins it once; straight runs of
fields become one list display, and if/elif arms (unions, int sizes, absent-or-present fields) keep
their pieces in local variables instead of touching the list. The byte-level pieces it calls
(table varints, floats, decimals) are in ``router.spec.avro_wire``.

Three tiers, each handing the record to the next on any exception, so the answer is always fastavro's:

1. the generated code, lengths from a table (strings, bytes, arrays and maps under 8192 items);
2. the same code without that limit;
3. fastavro itself, its refusals surfaced as ``ValueError`` or ``TypeError`` (fastavro's own error
   when it is one of those; ``OverflowError``, ``KeyError``, ``AttributeError``, ... become a
   ``ValueError`` chained to it).

The generated code accepts exact types only: ``dict`` records and maps, ``list`` arrays, ``str``,
``int`` (not ``bool``), ``float``, ``bool``, ``None``, ``bytes``/``bytearray``, and for logical
types ``Decimal``, ``datetime``, ``date``, ``time``, ``UUID``. Inside a union it accepts a value
only where fastavro's validation picks the same branch. Everything else goes to fastavro, which
writes some surprising values the same way every time (``True`` or ``1.5`` for an int, ``"x"`` for
a boolean, ``"1.5"`` for a double, a tuple for an array, ``("string", "x")`` union notation) and
refuses the rest. Per value, fastavro decides: other types and subclasses, ints beyond 64 bits,
missing required fields, unknown symbols, wrong fixed sizes, decimals in exponent notation or too
precise, unions with two record/map branches for a dict, ``bytes`` where an array branch comes
first (``b""`` validates as an empty array), ISO strings for a union with a ``date`` branch.

Schemas not compiled at all (``write`` is tier 3): a union directly inside a union, and types
fastavro knows beyond plain Avro (``error_union``, ``request``). Recursive and repeatedly used named
records become functions of their own; everything else is inlined.
"""

from __future__ import annotations

import datetime
import decimal
import io
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import fastavro
from fastavro.logical_writers import LOGICAL_WRITERS
from fastavro.schema import extract_logical_type

from router.spec.avro_wire import (
    _C14,
    _INT_MAX,
    _INT_MIN,
    _LEN,
    _LONG_MAX,
    _LONG_MIN,
    _T14,
    _ZZ,
    _bool_strict,
    _bytes_decimal,
    _Defer,
    _double,
    _float,
    _int32,
    _length,
    _long,
    _uvarint,
)
from router.spec.generated import compile_generated

__all__ = ["Writer", "compile_writer"]

Writer = Callable[[Any], bytes]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


class _Unsupported(Exception):
    """A schema shape the generator leaves to fastavro."""


# ---- the generator ---------------------------------------------------------------------------

# Python types the fast path knows, by the name generated code uses for them.
_PYTYPES: dict[str, type] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "bytes": bytes,
    "bytearray": bytearray,
    "dict": dict,
    "list": list,
    "_Decimal": decimal.Decimal,
    "_datetime": datetime.datetime,
    "_date": datetime.date,
    "_time": datetime.time,
    "_UUID": uuid.UUID,
}

# The Python types each logical type converts before writing (fastavro's prepare_* functions).
_CONVERTS: dict[str, tuple[str, ...]] = {
    "long-timestamp-millis": ("_datetime",),
    "long-timestamp-micros": ("_datetime",),
    "long-local-timestamp-millis": ("_datetime",),
    "long-local-timestamp-micros": ("_datetime",),
    "int-date": ("_date", "_datetime"),
    "int-time-millis": ("_time",),
    "long-time-micros": ("_time",),
    "string-uuid": ("_UUID",),
    "bytes-decimal": ("_Decimal",),
    "fixed-decimal": ("_Decimal",),
}

# How fastavro's union validation treats a value of one Python type against one branch.
_NO, _ALWAYS, _CHECK, _FINAL, _RECORD, _UNKNOWN = range(6)
_ACCEPTS: dict[str, dict[str, int]] = {
    "null": {},  # None is tested first, apart
    "boolean": {"bool": _ALWAYS},
    "int": {"int": _CHECK},  # the 32-bit range
    "long": {"int": _CHECK},  # the 64-bit range
    "float": {"int": _ALWAYS, "float": _ALWAYS},
    "double": {"int": _ALWAYS, "float": _ALWAYS},
    "bytes": {"bytes": _ALWAYS, "bytearray": _ALWAYS},
    "fixed": {"bytes": _CHECK, "bytearray": _CHECK},  # the size
    "string": {"str": _ALWAYS},
    "enum": {"str": _CHECK},  # a symbol
    "array": {"list": _FINAL, "bytes": _UNKNOWN, "bytearray": _UNKNOWN},  # bytes are Sequences: b"" validates
    "map": {"dict": _FINAL},
    "record": {"dict": _RECORD},
    "error": {"dict": _RECORD},
}

_HELPERS: dict[str, Any] = {
    **_PYTYPES,
    "type": type,
    "len": len,
    "_Defer": _Defer,
    "_T14": _T14,
    "_C14": _C14,
    "_ZZ": _ZZ,
    "_LEN": _LEN,
    "_long": _long,
    "_int32": _int32,
    "_length": _length,
    "_double": _double,
    "_float": _float,
    "_bool_strict": _bool_strict,
    "_bytes_decimal": _bytes_decimal,
    "_join": b"".join,
    "_ABSENT": object(),  # dict.get's answer for an absent key
}

Resolved = tuple[str, Any, str | None]


class _Gen:
    """Writes the source of one writer module.

    Generated code appends byte strings ("pieces") to a list ``p`` and joins it once. Pieces wait in
    ``pending`` and are appended in one statement per straight run of code (``flush``). ``strict``
    code (inside a union branch) accepts only values fastavro's validation accepts. ``short`` code
    looks lengths up in a table of 8192 and fails with IndexError beyond it (tier 1 of 2).
    """

    def __init__(self, named: dict[str, Any], parsed: Any, *, short: bool, defaults: bool = True) -> None:
        self.named = named
        self.short = short
        self.defaults = defaults  # precompute the bytes of defaults (not in the writers doing that)
        self.consts: list[Any] = []
        self.str_consts: dict[str, str] = {}
        self.counter = 0
        self.lines: list[str] = []
        self.indent = 0
        self.pending: list[list[str]] = [[]]
        self.p_created = False
        self.appends = 0  # statements that touch ``p``; a branch without any can put its pieces in slots
        self.functions: dict[tuple[str, bool], str] = {}
        self.queue: list[tuple[str, dict[str, Any], bool]] = []
        self.uses: dict[str, int] = {}
        self._count_uses(parsed)

    # -- bookkeeping

    def _count_uses(self, schema: Any) -> None:
        """How often each named record is defined or referenced: once means inline, more a function."""
        if isinstance(schema, list):
            for branch in schema:
                self._count_uses(branch)
        elif isinstance(schema, str):
            if schema not in _PRIMITIVES:
                self.uses[schema] = self.uses.get(schema, 0) + 1
        elif isinstance(schema, dict):
            kind = schema.get("type")
            if kind in ("record", "error"):
                self.uses[schema["name"]] = self.uses.get(schema["name"], 0) + 1
                for field in schema["fields"]:
                    self._count_uses(field["type"])
            elif kind == "array":
                self._count_uses(schema["items"])
            elif kind == "map":
                self._count_uses(schema["values"])

    def const(self, value: Any) -> str:
        """A name bound to ``value`` in the generated module: schema data never becomes source text."""
        if type(value) is str and value in self.str_consts:
            return self.str_consts[value]
        name = f"_K{len(self.consts)}"
        self.consts.append(value)
        if type(value) is str:
            self.str_consts[value] = name
        return name

    def var(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def emit(self, line: str) -> None:
        self.lines.append("    " * self.indent + line)

    def piece(self, expr: str) -> None:
        self.pending[-1].append(expr)

    def pieces(self, exprs: list[str]) -> None:
        self.pending[-1].extend(exprs)

    def flush(self) -> None:
        pieces = self.pending[-1]
        if pieces or not self.p_created:
            self.appends += 1
        if not self.p_created:
            self.emit(f"p = [{', '.join(pieces)}]")
            self.p_created = True
        elif len(pieces) == 1:
            self.emit(f"p.append({pieces[0]})")
        elif pieces:
            self.emit(f"p += ({', '.join(pieces)})")
        pieces.clear()

    @contextmanager
    def block(self, header: str) -> Iterator[None]:
        """``header:`` and an indented body; pieces added in the body are appended inside it."""
        self.flush()
        self.emit(header)
        self.indent += 1
        self.pending.append([])
        start = len(self.lines)
        yield
        self.flush()
        self.pending.pop()
        if len(self.lines) == start:
            self.emit("pass")
        self.indent -= 1

    def branches(self, arms: list[tuple[str, Callable[[], None]]]) -> None:
        """An if/elif/else chain. Arms that only add pieces leave them in local "slots" (padded with
        ``b''`` to the widest arm) which join the pieces after the chain: no list operation per arm.
        An arm that must append to ``p`` itself (a loop, a record function) makes the chain fall back
        to appending inside every arm."""
        appends, p_created, saved = self.appends, self.p_created, self.lines
        captured: list[tuple[str, list[str], list[str]]] = []
        for header, body in arms:
            self.lines = []
            self.indent += 1
            self.pending.append([])
            body()
            pieces = self.pending.pop()
            self.indent -= 1
            captured.append((header, self.lines, pieces))
        self.lines = saved
        if self.appends != appends:  # roll back: generate again, appending in each arm
            self.appends, self.p_created = appends, p_created
            for header, body in arms:
                with self.block(header):
                    body()
            return
        slots = [self.var("s") for _ in range(max(len(pieces) for _, _, pieces in captured))]
        for header, lines, pieces in captured:
            self.emit(header)
            self.lines += lines
            if lines and lines[-1] == "    " * (self.indent + 1) + "raise _Defer":  # the arm itself raises
                continue
            padded = [*pieces, *(["b''"] * (len(slots) - len(pieces)))]
            if slots:
                self.emit(f"    {', '.join(slots)} = {', '.join(padded)}")
            elif not lines:
                self.emit("    pass")
        for slot in slots:
            self.piece(slot)

    def bind(self, expr: str) -> str:
        if expr.isidentifier():
            return expr
        name = self.var("v")
        self.emit(f"{name} = {expr}")
        return name

    def length(self, expr: str) -> str:
        return f"_LEN[len({expr})]" if self.short else f"_length(len({expr}))"

    def resolve(self, schema: Any) -> Resolved:
        """(Avro type, schema dict or primitive name, logical key such as ``long-timestamp-millis``)."""
        if isinstance(schema, list):
            return "union", schema, None
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return schema, schema, None
            if schema not in self.named:
                raise _Unsupported(f"unknown named type {schema!r}")
            schema = self.named[schema]
        if not isinstance(schema, dict) or schema.get("type") not in _ACCEPTS:
            raise _Unsupported("not a plain Avro type")
        logical = extract_logical_type(schema)
        return schema["type"], schema, logical if logical in LOGICAL_WRITERS else None

    # -- values

    def gen(self, schema: Any, expr: str, strict: bool, known: str | None = None) -> None:
        """Code appending the encoding of ``expr``; ``known`` names its Python type when a union tested it."""
        kind, s, logical = self.resolve(schema)
        if kind == "union":
            self.gen_union(s, expr)
        elif kind in ("record", "error"):
            self.gen_record(s, expr, strict, known)
        elif kind in ("int", "long"):
            self.gen_integer(kind, s, expr, strict, logical)
        elif logical is not None:
            self.gen_scalar(kind, s, self.gen_convert(s, expr, logical), strict, None)
        elif kind == "array":
            self.gen_array(s, expr, strict, known)
        elif kind == "map":
            self.gen_map(s, expr, strict, known)
        else:
            self.gen_scalar(kind, s, expr, strict, known)

    def gen_scalar(self, kind: str, s: Any, expr: str, strict: bool, known: str | None) -> None:
        if kind == "null":
            if strict and known is None:
                self.emit(f"if {self.bind(expr)} is not None: raise _Defer")
        elif kind == "boolean":
            self.piece(f"_bool_strict({expr})" if strict else f"(b'\\x01' if {expr} else b'\\x00')")
        elif kind == "double":
            self.piece(f"_double({expr})")
        elif kind == "float":
            self.piece(f"_float({expr})")
        elif kind == "string":
            if strict and known != "str":
                expr = self.bind(expr)
                self.emit(f"if type({expr}) is not str: raise _Defer")
            b = self.var("b")
            self.emit(f"{b} = {expr}.encode()")
            self.piece(self.length(b))
            self.piece(b)
        elif kind in ("bytes", "fixed"):
            v = self.bind(expr)
            test = f"type({v}) is not bytes and type({v}) is not bytearray" if known is None else ""
            if kind == "fixed":
                size = f"len({v}) != {self.const(s['size'])}"
                test = f"({test}) or {size}" if test else size
            else:
                self.piece(self.length(v))
            if test:
                self.emit(f"if {test}: raise _Defer")
            self.piece(v)
        elif kind == "enum":
            v, e = self.bind(expr), self.var("e")
            symbols: dict[str, bytes] = {}
            for index, symbol in enumerate(s["symbols"]):
                symbols.setdefault(symbol, _uvarint(index << 1))
            self.emit(f"{e} = {self.const(symbols)}.get({v}) if type({v}) is str else None")
            self.emit(f"if {e} is None: raise _Defer")
            self.piece(e)
        else:
            raise _Unsupported(f"type {kind!r}")

    def gen_integer(self, kind: str, s: Any, expr: str, strict: bool, logical: str | None) -> None:
        """Small ints from a table; longs of 15 to 42 bits (timestamps) as table pieces; the rest via ``_long``.

        A logical type's conversion (datetime, date, time) is tried only off the fast int paths.
        """
        v = self.bind(expr)
        slow = "_int32" if strict and kind == "int" else "_long"  # outside unions fastavro writes any long long
        small = f"type({v}) is int and -64 <= {v} < 8192"
        if kind == "int" and logical is None:
            self.piece(f"(_ZZ[{v} + 64] if {small} else {slow}({v}))")
            return

        def small_int() -> None:
            self.piece(f"_ZZ[{v} + 64]")

        def table_int(chunks: int) -> Callable[[], None]:  # zigzag of 15 to 28 or 29 to 42 bits: 14-bit pieces
            def body() -> None:
                z = self.var("n")
                self.emit(f"{z} = {v} + {v}")
                more = [f"_C14[{z} >> {14 * k} & 16383]" if k else f"_C14[{z} & 16383]" for k in range(chunks - 1)]
                self.pieces([*more, f"_T14[{z} >> {14 * (chunks - 1)}]"])

            return body

        def other() -> None:
            if logical is not None:
                self.gen_convert(s, v, logical)
            self.piece(f"{slow}({v})")

        arms = [
            (small, small_int),
            (f"type({v}) is int and 8192 <= {v} < 0x8000000", table_int(2)),
            (f"type({v}) is int and 0x8000000 <= {v} < 0x20000000000", table_int(3)),
        ]
        if logical in ("long-timestamp-millis", "long-timestamp-micros"):
            arms.insert(0, arms.pop())  # mostly 41-bit millisecond timestamps
        self.branches(
            [(f"{'elif' if n else 'if'} {test}:", body) for n, (test, body) in enumerate(arms)] + [("else:", other)]
        )

    def gen_convert(self, schema: dict[str, Any], expr: str, logical: str) -> str:
        """Apply fastavro's logical-type conversion to the Python types it converts; return the value's name."""
        v = self.bind(expr)
        test = " or ".join(f"type({v}) is {t}" for t in _CONVERTS[logical])
        if logical == "bytes-decimal" and _plain_decimal(schema):
            scale, precision = schema.get("scale", 0), schema["precision"]
            call = f"_bytes_decimal({v}, {self.const(scale)}, {self.const(precision)})"
        else:
            call = f"{self.const(LOGICAL_WRITERS[logical])}({v}, {self.const(schema)})"
        self.emit(f"if {test}: {v} = {call}")
        return v

    def gen_record(self, schema: dict[str, Any], expr: str, strict: bool, known: str | None) -> None:
        name = schema["name"]
        if self.uses.get(name, 0) > 1:  # recursive or used twice: a function of its own
            key = (name, strict)
            if key not in self.functions:
                self.functions[key] = f"_rec{len(self.functions)}"
                self.queue.append((self.functions[key], schema, strict))
            self.flush()
            self.emit(f"{self.functions[key]}({expr}, p)")
        else:
            self.gen_fields(schema, self.bind(expr), strict, known)

    def gen_fields(self, schema: dict[str, Any], v: str, strict: bool, known: str | None) -> None:
        if known is None:
            self.emit(f"if type({v}) is not dict: raise _Defer")
        if strict:
            self.emit(f"if '-type' in {v}: raise _Defer")  # fastavro's validation compares it to the name
        for field in schema["fields"]:
            key = self.const(field["name"])
            field_type = field["type"]
            encoded = self.encoded_default(field) if not strict else None
            if encoded is not None:
                self.gen_defaulted(field_type, f"{v}.get({key}, _ABSENT)", encoded)
                continue
            if "default" in field and field["default"] is not None:
                expr = f"{v}.get({key}, {self.const(field['default'])})"
            elif "default" in field:
                expr = f"{v}.get({key})"
            elif _mentions_null(field_type):
                expr = f"{v}.get({key})"  # fastavro writes None for the absent field
            else:
                expr = f"{v}[{key}]"  # absent: fastavro raises "no value and no default"
            self.gen(field_type, expr, strict)

    def encoded_default(self, field: dict[str, Any]) -> bytes | None:
        """The bytes of a field's default (not None), written by the generated code itself; None if it cannot."""
        if not self.defaults or field.get("default") is None:
            return None
        try:
            writer = _generate(field["type"], self.named, short=False, fallback=None, defaults=False)
            return writer(field["default"])
        except Exception:  # not compilable or not writable: the default is written (or refused) per record
            return None

    def gen_defaulted(self, field_type: Any, expr: str, encoded: bytes) -> None:
        """An absent key costs one constant piece: fastavro writes the default there, the same every time."""
        v = self.bind(expr)
        self.branches(
            [
                (f"if {v} is _ABSENT:", lambda: self.piece(self.const(encoded))),
                ("else:", lambda: self.gen(field_type, v, False)),
            ]
        )

    def gen_array(self, schema: dict[str, Any], expr: str, strict: bool, known: str | None) -> None:
        v, x = self.bind(expr), self.var("x")
        if known is None:
            self.emit(f"if type({v}) is not list: raise _Defer")
        self.piece(f"({self.length(v)} if {v} else b'')")  # an empty array is only the end marker
        with self.block(f"for {x} in {v}:"):
            self.gen(schema["items"], x, strict)
        self.piece("b'\\x00'")

    def gen_map(self, schema: dict[str, Any], expr: str, strict: bool, known: str | None) -> None:
        v, k, x, b = self.bind(expr), self.var("k"), self.var("x"), self.var("b")
        if known is None:
            self.emit(f"if type({v}) is not dict: raise _Defer")
        self.piece(f"({self.length(v)} if {v} else b'')")  # an empty map is only the end marker
        with self.block(f"for {k}, {x} in {v}.items():"):
            if strict:
                self.emit(f"if type({k}) is not str: raise _Defer")
            self.emit(f"{b} = {k}.encode()")
            self.piece(self.length(b))
            self.piece(b)
            self.gen(schema["values"], x, strict)
        self.piece("b'\\x00'")

    # -- unions

    def gen_union(self, branches: list[Any], expr: str) -> None:
        """Pick the branch fastavro's ``write_union`` picks: the first that validates, preferring double to float."""
        resolved = [self.resolve(b) for b in branches]
        if any(kind == "union" for kind, _, _ in resolved):
            raise _Unsupported("union inside a union")
        v = self.bind(expr)
        arms: list[tuple[str, Callable[[], None]]] = []
        null = next((i for i, (kind, _, _) in enumerate(resolved) if kind == "null"), None)
        if null is not None:
            arms.append((f"if {v} is None:", lambda: self.piece(repr(_uvarint(null << 1)))))
        for pytype in _PYTYPES:
            chain = _union_chain(resolved, pytype)
            if chain:

                def arm(chain: list[tuple[bool, int]] = chain, pytype: str = pytype) -> None:
                    self.gen_chain(chain, resolved, branches, v, pytype)

                arms.append((f"{'elif' if arms else 'if'} type({v}) is {pytype}:", arm))
        if not arms:
            self.emit("raise _Defer")
            return
        self.branches([*arms, ("else:", lambda: self.emit("raise _Defer"))])

    def gen_chain(
        self, chain: list[tuple[bool, int]], resolved: list[Resolved], branches: list[Any], v: str, pytype: str
    ) -> None:
        """``chain``: (tested, branch index) in order; untested is "otherwise", index -1 "let fastavro decide"."""
        if len(chain) == 1:
            self.gen_branch(chain[0][1], branches, v, pytype)
            return
        arms: list[tuple[str, Callable[[], None]]] = []
        for n, (tested, index) in enumerate(chain):
            header = f"{'if' if n == 0 else 'elif'} {self.branch_test(resolved[index], v)}:" if tested else "else:"

            def arm(index: int = index) -> None:
                self.gen_branch(index, branches, v, pytype)

            arms.append((header, arm))
        self.branches(arms)

    def branch_test(self, resolved: Resolved, v: str) -> str:
        kind, s, _ = resolved
        if kind == "int":
            return f"{_INT_MIN} <= {v} <= {_INT_MAX}"
        if kind == "long":
            return f"{_LONG_MIN} <= {v} <= {_LONG_MAX}"
        if kind == "fixed":
            return f"len({v}) == {self.const(s['size'])}"
        return f"{v} in {self.const(frozenset(s['symbols']))}"  # enum

    def gen_branch(self, index: int, branches: list[Any], v: str, pytype: str) -> None:
        if index < 0:
            self.emit("raise _Defer")
            return
        self.piece(repr(_uvarint(index << 1)))
        kind = self.resolve(branches[index])[0]
        known = pytype if _ACCEPTS[kind].get(pytype, _NO) != _NO else None  # not for converted values
        self.gen(branches[index], v, True, known)

    # -- whole functions

    def function(self, header: str, body: Callable[[], None], *, returns: bool, fallback: str | None) -> list[str]:
        self.lines, self.indent, self.pending, self.p_created = [], 2, [[]], not returns
        if fallback:
            self.emit("try:")
            self.indent += 1
        body()
        if not returns:
            self.flush()
        elif self.p_created:
            self.flush()
            self.emit("return _join(p)")
        elif not self.pending[-1]:
            self.emit("return b''")
        elif len(self.pending[-1]) == 1:
            self.emit(f"return bytes({self.pending[-1][0]})")
        else:
            self.emit(f"return _join(({', '.join(self.pending[-1])},))")
        if fallback:
            self.indent -= 1
            self.emit("except Exception:")
            self.emit("    pass")
            self.emit(f"return {fallback}(r)")  # outside the except block: no chained tracebacks
        if not self.lines:
            self.emit("pass")
        return ["    " + header, *self.lines]

    def module(self, parsed: Any, fallback: str | None) -> str:
        """``def _factory(<names>)`` defining ``write`` and the record functions, returning ``write``."""
        lines = self.function("def write(r):", lambda: self.gen(parsed, "r", False), returns=True, fallback=fallback)
        done = 0
        while done < len(self.queue):
            name, schema, strict = self.queue[done]
            done += 1

            def body(schema: dict[str, Any] = schema, strict: bool = strict) -> None:
                self.gen_fields(schema, "v", strict, None)

            lines += self.function(f"def {name}(v, p):", body, returns=False, fallback=None)
        names = [*_HELPERS, *(f"_K{i}" for i in range(len(self.consts))), *([fallback] if fallback else [])]
        return "\n".join([f"def _factory({', '.join(names)}):", *lines, "    return write", ""])


def _union_chain(resolved: list[Resolved], pytype: str) -> list[tuple[bool, int]]:
    """Which branch fastavro's ``write_union`` picks for a value of ``pytype``, as tests in order.

    fastavro validates the branches in order and takes the first that passes, with two twists:
    after a float it takes a later double instead, and after a record it keeps looking (a record
    with more matching fields, or any later branch that validates, wins). Where the outcome cannot
    be read off the type plus cheap tests, the chain ends in (False, -1): hand the record to fastavro.
    """
    candidates = [(i, r, _accepts(r, pytype)) for i, r in enumerate(resolved)]
    candidates = [c for c in candidates if c[2] != _NO]
    chain: list[tuple[bool, int]] = []
    for position, (index, (kind, _, _), how) in enumerate(candidates):
        if how == _UNKNOWN or (how == _RECORD and position + 1 < len(candidates)):
            break
        if how == _CHECK:
            chain.append((True, index))
            continue
        chosen = index
        if kind == "float":
            chosen = next((j for j in range(index + 1, len(resolved)) if resolved[j][0] == "double"), index)
        chain.append((False, chosen))  # the strict writer of a _FINAL or _RECORD branch defers on failure
        return chain
    return [*chain, (False, -1)] if chain else []


def _accepts(resolved: Resolved, pytype: str) -> int:
    kind, _, logical = resolved
    if pytype in _CONVERTS.get(logical or "", ()):
        return _FINAL  # converted by fastavro's prepare function, then checked by the strict writer
    if logical == "int-date" and pytype == "str":
        return _UNKNOWN  # fastavro parses the string as an ISO date, or raises
    return _ACCEPTS[kind].get(pytype, _NO)


def _mentions_null(field_type: Any) -> bool:
    """fastavro's ``"null" in field_type`` (a substring test for names, membership for unions)."""
    try:
        return "null" in field_type
    except TypeError as exc:
        raise _Unsupported("field type") from exc


def _plain_decimal(schema: dict[str, Any]) -> bool:
    scale, precision = schema.get("scale", 0), schema.get("precision")
    return type(scale) is int and scale >= 0 and type(precision) is int and precision > 0


# ---- the API ---------------------------------------------------------------------------------


def _fastavro_writer(parsed: Any) -> Writer:
    """fastavro itself, its rejections all surfaced as ValueError or TypeError."""
    schemaless_writer = fastavro.schemaless_writer

    def slow(record: Any) -> bytes:
        out = io.BytesIO()
        try:
            schemaless_writer(out, parsed, record)
        except (ValueError, TypeError):
            raise
        except Exception as exc:  # fastavro also raises OverflowError, KeyError, AttributeError, ...
            raise ValueError(f"record does not match the schema: {type(exc).__name__}: {exc}") from exc
        return out.getvalue()

    return slow


def _generate(
    parsed: Any, named: dict[str, Any], *, short: bool, fallback: Writer | None, defaults: bool = True
) -> Writer:
    gen = _Gen(named, parsed, short=short, defaults=defaults)
    source = gen.module(parsed, "_fallback" if fallback else None)
    namespace: dict[str, Any] = {}
    code, _ = compile_generated(source, f"avro writer of {_schema_name(parsed)}", "" if short else "long values")
    exec(code, namespace)  # noqa: S102 - generated, no schema text
    env = {**_HELPERS, **{f"_K{i}": value for i, value in enumerate(gen.consts)}}
    if fallback:
        env["_fallback"] = fallback
    return cast(Writer, namespace["_factory"](**env))


def _schema_name(parsed: Any) -> str:
    return str(parsed.get("name", parsed.get("type", "?"))) if isinstance(parsed, dict) else str(parsed)


def generate_source(schema: dict[str, Any] | list[Any] | str, *, short: bool = True) -> tuple[str, tuple[Any, ...]]:
    """The generated module and its constants (for tests and reading); raises _Unsupported."""
    named: dict[str, Any] = {}
    parsed = fastavro.parse_schema(schema, named)
    gen = _Gen(named, parsed, short=short)
    return gen.module(parsed, "_fallback"), tuple(gen.consts)


def compile_writer(schema: dict[str, Any] | list[Any] | str) -> Writer:
    """``write(record) -> bytes``, equal to ``fastavro.schemaless_writer`` with ``fastavro.parse_schema(schema)``.

    Raises fastavro's own exception for a schema fastavro rejects. ``write`` raises ValueError or
    TypeError for every record fastavro rejects. Three tiers, each handing over on any exception:
    the generated code with table-only lengths, the same without that limit, then fastavro.
    """
    named: dict[str, Any] = {}
    parsed = fastavro.parse_schema(schema, named)  # invalid schemas fail here, with fastavro's error
    slow = _fastavro_writer(parsed)
    try:
        unlimited = _generate(parsed, named, short=False, fallback=slow)
        return _generate(parsed, named, short=True, fallback=unlimited)
    except _Unsupported:
        return slow

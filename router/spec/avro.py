"""Avro schemas in ``schemas/avro/<full name>.avsc``: loaded, parsed and described for the compiler."""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import fastavro
import orjson
from fastavro.schema import SchemaParseException, UnknownType

from router import codes
from router.errors import SpecError
from router.spec.avro_writer import Writer, compile_writer


@dataclass(frozen=True)
class AvroSchema:
    """One record schema: its full name, the text to register, and fastavro's parsed form."""

    full_name: str
    text: str
    raw: dict[str, Any]
    parsed: Any
    file: str

    @cached_property
    def writer(self) -> Writer:
        """``write(record) -> bytes``: fastavro's encoding of this schema, compiled once."""
        return compile_writer(self.raw)


class AvroCatalog:
    """Every ``.avsc`` file of a folder, by full name."""

    def __init__(self, schemas: dict[str, AvroSchema]) -> None:
        self._schemas = schemas

    @classmethod
    def load(cls, directory: Path) -> AvroCatalog:
        """Parse every ``*.avsc`` in ``directory``; raise SpecError naming the file on any problem."""
        if not directory.is_dir():
            raise SpecError(f"schema folder {directory} does not exist; pass --schemas DIR", file=str(directory))
        schemas: dict[str, AvroSchema] = {}
        for file in sorted(directory.glob("*.avsc")):
            schema = _load_one(file)
            if file.stem != schema.full_name:
                raise SpecError(
                    f"file name must be the schema's full name: rename it to {schema.full_name}.avsc",
                    file=str(file), code=codes.SPEC_AVRO_NAME,
                )
            schemas[schema.full_name] = schema
        return cls(schemas)

    def get(self, full_name: str) -> AvroSchema | None:
        return self._schemas.get(full_name)

    def names(self) -> list[str]:
        return sorted(self._schemas)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._schemas.values())


def _load_one(file: Path) -> AvroSchema:
    text = file.read_text()
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise SpecError(f"not valid JSON: {exc}", file=str(file), code=codes.SPEC_AVRO_INVALID) from None
    try:
        parsed = fastavro.parse_schema(raw)
    except (SchemaParseException, UnknownType, ValueError, TypeError, KeyError) as exc:
        raise SpecError(f"not a valid Avro schema: {exc}", file=str(file), code=codes.SPEC_AVRO_INVALID) from None
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise SpecError("an output schema must be an Avro record", file=str(file), code=codes.SPEC_AVRO_INVALID)
    namespace = raw.get("namespace")
    name = str(raw["name"])
    full = name if "." in name or not namespace else f"{namespace}.{name}"
    return AvroSchema(full_name=full, text=orjson.dumps(raw).decode(), raw=raw, parsed=parsed, file=str(file))


# ---- describing Avro types for the mapping compiler -------------------------------------------

NO_DEFAULT = object()


@dataclass(frozen=True)
class FieldType:
    """What an Avro field accepts, reduced to what the mapping compiler needs."""

    avro: Any  # the field's type as written (resolved named types inline)
    nullable: bool
    kinds: frozenset[str]  # of: string int long float double boolean bytes decimal array record map enum
    decimal_scale: int | None = None
    symbols: tuple[str, ...] = ()
    record: dict[str, Any] | None = None  # the record schema of a record or array-of-records field
    items: Any = None
    item_type: FieldType | None = None  # arrays of non-records: what each item accepts
    decimal_precision: int | None = None

    def describe(self) -> str:
        kinds = sorted(self.kinds)
        return " | ".join(kinds + (["null"] if self.nullable else []))


def field_type(avro_type: Any, named: dict[str, Any]) -> FieldType:
    """Describe an Avro type; ``named`` resolves references to named types seen earlier."""
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    nullable = False
    kinds: set[str] = set()
    scale: int | None = None
    precision: int | None = None
    symbols: tuple[str, ...] = ()
    record: dict[str, Any] | None = None
    items: Any = None
    item_type: FieldType | None = None
    for branch in branches:
        b = named.get(branch, branch) if isinstance(branch, str) else branch
        if b == "null":
            nullable = True
            continue
        if isinstance(b, str):
            kinds.add(b)
            continue
        t = b.get("type")
        if b.get("logicalType") == "decimal":
            kinds.add("decimal")
            scale = int(b.get("scale", 0))
            precision = int(b.get("precision", 0)) or None
        elif t == "record":
            kinds.add("record")
            record = b
            _remember(b, named)
        elif t == "array":
            kinds.add("array")
            items = b.get("items")
            it = named.get(items, items) if isinstance(items, str) else items
            if isinstance(it, dict) and it.get("type") == "record":
                record = it
                _remember(it, named)
            else:
                item_type = field_type(items, named)
        elif t == "enum":
            kinds.add("enum")
            symbols = tuple(b.get("symbols", ()))
            _remember(b, named)
        elif isinstance(t, str):
            kinds.add(t)
    return FieldType(avro_type, nullable, frozenset(kinds), scale, symbols, record, items, item_type, precision)


def _remember(schema: dict[str, Any], named: dict[str, Any]) -> None:
    name = schema.get("name", "")
    ns = schema.get("namespace")
    named[name] = schema
    if ns and "." not in name:
        named[f"{ns}.{name}"] = schema


_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def python_accepts(ft: FieldType, value: Any) -> bool:
    """True when ``value`` can be written as this Avro type (the per-field runtime check)."""
    if value is None:
        return ft.nullable
    kinds = ft.kinds
    if isinstance(value, bool):
        return "boolean" in kinds
    if isinstance(value, int):
        return (("int" in kinds and _INT32[0] <= value <= _INT32[1])
                or (bool(kinds & {"long", "float", "double"}) and _INT64[0] <= value <= _INT64[1]))
    if isinstance(value, float):
        return bool(kinds & {"float", "double"})
    if isinstance(value, str):
        return "string" in kinds or ("enum" in kinds and value in ft.symbols)
    if isinstance(value, decimal.Decimal):
        if "decimal" not in kinds or not value.is_finite():
            return False
        return ft.decimal_precision is None or len(value.as_tuple().digits) <= ft.decimal_precision
    if isinstance(value, bytes):
        return "bytes" in kinds
    if isinstance(value, list):
        if "array" not in kinds:
            return False
        item = ft.item_type
        return item is None or all(python_accepts(item, v) for v in value)
    if isinstance(value, dict):
        return bool(kinds & {"record", "map"})
    return False


_JUST_STR = frozenset({str})


def compile_check(ft: FieldType) -> Any:
    """A predicate equivalent to ``python_accepts(ft, v)`` for non-null values, cheap for common kinds."""
    kinds = ft.kinds
    if kinds == {"string"}:
        return lambda v: type(v) is str
    if kinds == {"boolean"}:
        return lambda v: type(v) is bool
    if kinds == {"long"}:
        return lambda v: type(v) is int and _INT64[0] <= v <= _INT64[1]
    if kinds == {"int"}:
        return lambda v: type(v) is int and _INT32[0] <= v <= _INT32[1]
    if kinds <= {"float", "double"}:
        return lambda v: type(v) is float or (type(v) is int and _INT64[0] <= v <= _INT64[1])
    if kinds == {"array"} and ft.item_type is not None and ft.item_type.kinds == {"string"} \
            and not ft.item_type.nullable:
        return lambda v: type(v) is list and {*map(type, v)} <= _JUST_STR  # no per-item Python frame
    return lambda v: python_accepts(ft, v)

"""The mapping compiler: spec ``mapping.fields`` + the output Avro record → one plain callable.

Everything that can be decided at load time is: paths are split into getters, templates into
parts, lookup tables into dicts, coercions chosen, and every field checked against the Avro
field it fills (a field that may be missing must be nullable or have a default; constants and
defaults must fit). The returned ``RecordMapper`` does no YAML or schema walking per record and
raises only ``MappingError`` (``map.required_missing``, ``map.type_error``).
"""

from __future__ import annotations

import dataclasses
import decimal
import string
from collections.abc import Callable
from typing import Any, NamedTuple

from router import codes
from router.errors import MappingError
from router.spec import coerce, mapgen
from router.spec.avro import NO_DEFAULT, FieldType, compile_check, field_type, python_accepts
from router.spec.generated import GeneratedCode
from router.spec.mapgen import FieldPlan
from router.spec.paths import MISSING, compile_getter
from router.spec.yamlsrc import PathKey, SourceDoc, format_path


class Meta(NamedTuple):
    """What a mapping may read besides the event: ``$tenant``, ``$source``, … and template names.

    A NamedTuple: built once per record on the hot path, so it must be cheap to make.
    """

    tenant: str
    source: str
    event_id: str
    integration: str
    received_at: int


# (current item, whole event, meta) -> value or MISSING
ValueFn = Callable[[Any, Any, Meta], Any]
RecordMapper = Callable[[Any, Meta], dict[str, Any]]

META_NAMES = ("tenant", "source", "event_id", "integration", "received_at")
_SOURCE_KEYS = ("from", "coalesce", "template", "const", "cond", "each")


class _Collector:
    """Collects SpecErrors so that one run of `spec validate` reports them all, and the code generated."""

    def __init__(self, doc: SourceDoc) -> None:
        self.doc = doc
        self.errors: list[Exception] = []
        self.generated: list[GeneratedCode] = []  # one per mapped record, outermost last

    def error(self, path: PathKey, message: str, code: str = codes.SPEC_MAPPING) -> None:
        self.errors.append(self.doc.error(path, message, code))

    def origin(self, path: PathKey) -> str:
        """``file:line yaml.path``: where ``path`` is written, for generated code's comments."""
        line = self.doc.line(path)
        return f"{self.doc.file}:{line if line is not None else '?'} {format_path(path)}"


def path_value(path: str) -> ValueFn:
    """A ValueFn for a dotted path or a ``$`` name."""
    if path.startswith("$"):
        name = path[1:]
        if name == "event":
            return lambda item, root, meta: item
        if name == "root":
            return lambda item, root, meta: root
        if name in META_NAMES:
            return lambda item, root, meta: getattr(meta, name)
        raise ValueError(f"unknown name {path!r}: use one of $event, $root, " + ", ".join(f"${n}" for n in META_NAMES))
    get = compile_getter(path)
    return lambda item, root, meta: get(item)


def compile_record(
    fields: dict[str, Any], record: dict[str, Any], at: PathKey, col: _Collector, named: dict[str, Any]
) -> RecordMapper | None:
    """Compile ``fields`` against Avro ``record``; None (with errors collected) when it cannot work."""
    avro_fields = {f["name"]: f for f in record.get("fields", [])}
    record_name = record.get("name", "?")
    ok = True
    for name in fields:
        if name not in avro_fields:
            col.error((*at, name), f"the Avro record {record_name} has no field {name!r} (it has: "
                      + ", ".join(avro_fields) + ")")
            ok = False
    for name, af in avro_fields.items():
        if name not in fields and "default" not in af:
            col.error(at, f"Avro field {name!r} of {record_name} has no default and is not mapped: map it here "
                      "or give it a default in the schema")
            ok = False
    plan: list[FieldPlan] = []
    for name, af in avro_fields.items():
        if name not in fields:
            if "default" not in af:
                continue  # reported above
            default = af["default"]
            plan.append(FieldPlan(name, _constant(default), source="const", literal=default,
                                  origin=f"{name}: not mapped, the Avro default of {record_name}"))
            continue
        ftype = field_type(af["type"], named)
        field_plan = plan_field(name, fields[name], ftype, af.get("default", NO_DEFAULT), (*at, name), col, named)
        if field_plan is None:
            ok = False
        else:
            plan.append(dataclasses.replace(field_plan, origin=col.origin((*at, name))))
    if not ok:
        return None
    build = mapgen.generate(plan, f"mapping of {record_name}", col.doc.file)
    col.generated.append(build.generated)  # type: ignore[attr-defined]

    def mapper(event: Any, meta: Meta) -> dict[str, Any]:
        return build(event, event, meta)

    mapper.build = build  # type: ignore[attr-defined]  # nested records call build(item, root, meta)
    return mapper


def _constant(value: Any) -> Callable[[Any, Any, Meta], Any]:
    return lambda item, root, meta: value


def compile_field(
    name: str, spec: Any, ftype: FieldType, avro_default: Any, at: PathKey, col: _Collector, named: dict[str, Any]
) -> Callable[[Any, Any, Meta], Any] | None:
    """One output field as a closure (nested list items use it; records use :func:`plan_field`)."""
    plan = plan_field(name, spec, ftype, avro_default, at, col, named)
    return plan.closure if plan is not None else None


def plan_field(
    name: str, spec: Any, ftype: FieldType, avro_default: Any, at: PathKey, col: _Collector, named: dict[str, Any]
) -> FieldPlan | None:
    """One output field: value, then default / required / Avro default, then the Avro type check."""
    if isinstance(spec, str):
        spec = {"from": spec}
    parts = _value_parts(spec, ftype, at, col, named)
    if parts is None:
        return None
    value = _value_closure(parts)
    required = bool(spec.get("required", False))
    has_default = "default" in spec
    if required and has_default:
        col.error(at, "a field cannot be both required and have a default: drop one")
        return None
    always_set = "const" in spec or has_default
    if not required and not always_set and not ftype.nullable and avro_default is NO_DEFAULT:
        # The Avro schema already says it: a non-nullable field without a default must have a value.
        required = True
    fallback = None if avro_default is NO_DEFAULT else avro_default
    read = spec.get("from", spec.get("coalesce", spec.get("template")))
    where = f"field {name!r}" + (f" (from {read})" if isinstance(read, str | list) else "")
    accepts = compile_check(ftype)

    def missing() -> Any:
        if required:
            raise MappingError(f"{where}: required value is missing", code=codes.MAP_REQUIRED_MISSING)
        return fallback

    def wrong(v: Any) -> MappingError:
        return MappingError(
            f"{where}: {coerce.shown(v)} ({type(v).__name__}) does not fit Avro type {ftype.describe()}",
            code=codes.MAP_TYPE_ERROR)

    def closure(item: Any, root: Any, meta: Meta) -> Any:
        v = value(item, root, meta)
        if v is MISSING or v is None:
            return missing()
        if not accepts(v):
            raise wrong(v)
        return v

    inline = _inline_source(spec, parts)
    common = {"required": required, "fallback": fallback, "check": _CHECKS.get(ftype.kinds, "any"),
              "accepts": accepts, "missing": missing, "wrong": wrong}
    if inline is None:
        return FieldPlan(name, closure, source="closure", value=value, **common)
    return FieldPlan(name, closure, default=parts.default, table=parts.table, key_of=_key, conv=parts.conv,
                     **inline, **common)


_CHECKS = {frozenset({"string"}): "str", frozenset({"boolean"}): "bool", frozenset({"int"}): "int",
           frozenset({"long"}): "long"}


def _inline_source(spec: dict[str, Any], parts: _ValueParts) -> dict[str, Any] | None:
    """FieldPlan arguments for the source forms mapgen writes inline; None for the others."""
    if parts.divisor is not None:
        return None
    if parts.kind == "const":
        return {"source": "const", "literal": parts.literal}
    if parts.kind == "from":
        ref = _inline_ref(spec["from"])
        if ref is None:
            return None
        kind, target = ref
        return {"source": "path", "steps": target} if kind == "path" else {"source": "meta", "meta_name": target}
    if parts.kind == "template":
        pieces: list[Any] = []
        for piece in parts.template:
            if isinstance(piece, str):
                pieces.append(piece)
                continue
            ref = _inline_ref(piece[1])
            if ref is None:
                return None
            pieces.append(ref)
        return {"source": "template", "parts": tuple(pieces), "render": parts.source}
    return None


def _inline_ref(path: str) -> tuple[str, Any] | None:
    """("meta", name) or ("path", keys) for a reference mapgen can inline, else None."""
    if path.startswith("$"):
        return ("meta", path[1:]) if path[1:] in META_NAMES else None
    names = tuple(path.split("."))
    if any(name.isascii() and name.isdigit() for name in names):
        return None  # list indexes: the general getter handles them
    return ("path", names)


class _ValueParts(NamedTuple):
    """The pieces of a field's value expression (source, then divide_by, map, as, default)."""

    kind: str
    source: ValueFn
    default: Any
    table: dict[str, Any] | None
    conv: coerce.Coercion | None
    divisor: decimal.Decimal | None
    literal: Any = None  # kind "const"
    template: tuple[Any, ...] = ()  # kind "template": literal strings and ("ref", path text)


def compile_value(
    spec: Any, ftype: FieldType, at: PathKey, col: _Collector, named: dict[str, Any]
) -> ValueFn | None:
    """The value part of a field expression: source, divide_by, map, as, default."""
    parts = _value_parts(spec, ftype, at, col, named)
    return _value_closure(parts) if parts is not None else None


def _value_parts(
    spec: Any, ftype: FieldType, at: PathKey, col: _Collector, named: dict[str, Any]
) -> _ValueParts | None:
    if isinstance(spec, str):
        spec = {"from": spec}
    present = [k for k in _SOURCE_KEYS if k in spec]
    if len(present) != 1:
        col.error(at, "give exactly one of from, coalesce, template, const, cond, each"
                  + (f" (found: {', '.join(present)})" if present else ""))
        return None
    kind = present[0]
    try:
        source = _compile_source(kind, spec, ftype, at, col, named)
    except ValueError as exc:
        col.error((*at, kind), str(exc))
        return None
    if source is None:
        return None
    conv = _coercion(spec, ftype, at, col)
    table = _lookup(spec, at, col)
    divide = spec.get("divide_by")
    default = spec.get("default", MISSING)
    for literal, label in ((default, "default"), (spec.get("const", MISSING), "const")):
        if literal is not MISSING and not python_accepts(ftype, _literal(literal, ftype)):
            col.error((*at, label), f"{literal!r} does not fit the Avro type {ftype.describe()}")
            return None
    if table is not None:
        for key, mapped in table.items():
            if mapped is not None and not python_accepts(ftype, conv(mapped) if conv else _literal(mapped, ftype)):
                col.error((*at, "map", key), f"{mapped!r} does not fit the Avro type {ftype.describe()}")
                return None
    default = _literal(default, ftype) if default is not MISSING else MISSING
    auto_decimal = conv is None and "decimal" in ftype.kinds and kind != "const"
    if auto_decimal:
        conv = coerce.decimal_coercion(ftype.decimal_scale)
    divisor = decimal.Decimal(str(divide)) if divide is not None else None
    literal = _literal(spec["const"], ftype) if kind == "const" else None
    template = _template_parts(spec["template"]) if kind == "template" else ()
    return _ValueParts(kind, source, default, table, conv, divisor, literal, template)


def _value_closure(parts: _ValueParts) -> ValueFn:
    source, default, table, conv, divisor = parts.source, parts.default, parts.table, parts.conv, parts.divisor

    def value(item: Any, root: Any, meta: Meta) -> Any:
        v = source(item, root, meta)
        if v is MISSING or v is None:
            return default
        if divisor is not None:
            if isinstance(v, bool) or not isinstance(v, int | float | str | decimal.Decimal):
                raise MappingError(f"divide_by needs a number, got {type(v).__name__}", code=codes.MAP_TYPE_ERROR)
            try:
                v = decimal.Decimal(str(v)) / divisor
            except decimal.InvalidOperation:
                raise MappingError(f"divide_by needs a number, got {v!r}"[:80], code=codes.MAP_TYPE_ERROR) from None
        if table is not None:
            key = _key(v)
            if key not in table:
                return default
            v = table[key]
            if v is None:
                return default
        if conv is not None:
            v = conv(v)
        return v

    return value


def _compile_source(
    kind: str, spec: dict[str, Any], ftype: FieldType, at: PathKey, col: _Collector, named: dict[str, Any]
) -> ValueFn | None:
    if kind == "from":
        return path_value(spec["from"])
    if kind == "coalesce":
        getters = tuple(path_value(p) for p in spec["coalesce"])

        def first(item: Any, root: Any, meta: Meta) -> Any:
            for g in getters:
                v = g(item, root, meta)
                if v is not MISSING and v is not None:
                    return v
            return MISSING

        return first
    if kind == "const":
        literal = _literal(spec["const"], ftype)
        return lambda item, root, meta: literal
    if kind == "template":
        return _compile_template(spec["template"])
    if kind == "cond":
        return _compile_cond(spec, ftype, at, col, named)
    return _compile_each(spec, ftype, at, col, named)


def _template_parts(text: str) -> tuple[Any, ...]:
    """Literal strings and ("ref", path) pieces of a ``{path}`` template (meta names as ``$name``)."""
    parts: list[Any] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"invalid template {text!r}: {exc}") from None
    for literal, field_name, _spec, _conv in parsed:
        if literal:
            parts.append(literal)
        if field_name is not None:
            if not field_name:
                raise ValueError(f"invalid template {text!r}: empty {{}}; name a path such as {{data.id}}")
            bare = field_name.lstrip("$")
            parts.append(("ref", f"${bare}" if bare in META_NAMES else field_name))
    return tuple(parts)


def _compile_template(text: str) -> ValueFn:
    parts = [p if isinstance(p, str) else path_value(p[1]) for p in _template_parts(text)]
    frozen = tuple(parts)

    def render(item: Any, root: Any, meta: Meta) -> Any:
        out = []
        for p in frozen:
            if type(p) is str:
                out.append(p)
                continue
            v = p(item, root, meta)  # type: ignore[operator]
            if type(v) is str:
                out.append(v)
            elif v is MISSING or v is None:
                return MISSING  # a template with a hole is a missing value, never "None" text
            else:
                out.append(coerce.to_string(v) if not isinstance(v, dict | list) else str(v))
        return "".join(out)

    return render


_PREDICATES = ("equals", "not_equals", "in", "exists")


def _compile_cond(
    spec: dict[str, Any], ftype: FieldType, at: PathKey, col: _Collector, named: dict[str, Any]
) -> ValueFn | None:
    branches: list[tuple[Callable[[Any, Any, Meta], bool], ValueFn]] = []
    for i, case in enumerate(spec["cond"]):
        test = _predicate(case["if"])
        then = compile_value(case["then"], ftype, (*at, "cond", i, "then"), col, named)
        if then is None:
            return None
        branches.append((test, then))
    otherwise = compile_value(spec["else"], ftype, (*at, "else"), col, named) if "else" in spec else None
    if "else" in spec and otherwise is None:
        return None
    frozen = tuple(branches)

    def choose(item: Any, root: Any, meta: Meta) -> Any:
        for test, then in frozen:
            if test(item, root, meta):
                return then(item, root, meta)
        return otherwise(item, root, meta) if otherwise is not None else MISSING

    return choose


def _predicate(spec: dict[str, Any]) -> Callable[[Any, Any, Meta], bool]:
    get = path_value(spec["path"])
    if "exists" in spec:
        want = bool(spec["exists"])
        return lambda item, root, meta: (get(item, root, meta) not in (MISSING, None)) is want
    if "in" in spec:
        choices = frozenset(_key(v) for v in spec["in"])
        return lambda item, root, meta: _key(get(item, root, meta)) in choices
    if "equals" in spec:
        target = _key(spec["equals"])
        return lambda item, root, meta: _key(get(item, root, meta)) == target
    other = _key(spec["not_equals"])
    return lambda item, root, meta: _key(get(item, root, meta)) != other


def _compile_each(
    spec: dict[str, Any], ftype: FieldType, at: PathKey, col: _Collector, named: dict[str, Any]
) -> ValueFn | None:
    if "array" not in ftype.kinds:
        col.error((*at, "each"), f"each builds a list, but the Avro type is {ftype.describe()}")
        return None
    items = path_value(spec["each"])
    if ("fields" in spec) == ("item" in spec):
        col.error(at, "each needs exactly one of fields (a list of records) or item (a list of values)")
        return None
    if "fields" in spec:
        if ftype.record is None:
            col.error((*at, "fields"), "each.fields builds records, but the Avro list items are not records")
            return None
        sub = compile_record(spec["fields"], ftype.record, (*at, "fields"), col, named)
        if sub is None:
            return None
        build = sub.build  # type: ignore[attr-defined]
    else:
        item_type = field_type(ftype.items, named)
        item_fn = compile_field("item", spec["item"], item_type, NO_DEFAULT, (*at, "item"), col, named)
        if item_fn is None:
            return None
        build = item_fn

    def each(item: Any, root: Any, meta: Meta) -> Any:
        seq = items(item, root, meta)
        if seq is MISSING or seq is None:
            return MISSING
        if isinstance(seq, dict):  # one object maps as a one-item list (e.g. each: $event)
            seq = [seq]
        if not isinstance(seq, list):
            raise MappingError(f"each needs a list, got {type(seq).__name__}", code=codes.MAP_TYPE_ERROR)
        return [build(x, root, meta) for x in seq]

    return each


def _coercion(spec: dict[str, Any], ftype: FieldType, at: PathKey, col: _Collector) -> coerce.Coercion | None:
    target = spec.get("as")
    if target is None:
        return None
    if target == "decimal":
        if "decimal" not in ftype.kinds:
            col.error((*at, "as"), f"as: decimal needs an Avro decimal field, this one is {ftype.describe()}")
        return coerce.decimal_coercion(ftype.decimal_scale)
    return coerce.SIMPLE[target]


def _lookup(spec: dict[str, Any], at: PathKey, col: _Collector) -> dict[str, Any] | None:
    table = spec.get("map")
    if table is None:
        return None
    return {_key(k): v for k, v in table.items()}


def _key(value: Any) -> Any:
    """Lookup keys compare as text, so YAML ``1`` and JSON ``"1"`` match; booleans as true/false."""
    if value is MISSING or value is None:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _literal(value: Any, ftype: FieldType) -> Any:
    """A YAML literal in the Avro field's Python form (decimals as Decimal)."""
    if "decimal" in ftype.kinds and isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            return coerce.decimal_coercion(ftype.decimal_scale)(value)
        except MappingError:
            return value
    return value

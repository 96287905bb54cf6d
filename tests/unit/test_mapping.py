"""The mapping compiler's semantics, field by field, against small inline Avro records.

Fields are written as YAML (parsed by ``load_yaml``, as ``load_catalog`` does) so that YAML's own
typing of keys and literals is part of what is tested.
"""

from __future__ import annotations

import textwrap
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from router.errors import MappingError
from router.spec import coerce
from router.spec.mapping import Meta, RecordMapper, _Collector, compile_record
from router.spec.yamlsrc import load_yaml

META = Meta(tenant="acme", source="zendesk", event_id="evt-1", integration="demo", received_at=1_700_000_000_000)

STRING = {"type": "string"}
OPT_STRING = {"type": ["null", "string"], "default": None}
LONG = {"type": "long"}
TIMESTAMP = {"type": {"type": "long", "logicalType": "timestamp-millis"}}
MONEY = {"type": {"type": "bytes", "logicalType": "decimal", "precision": 14, "scale": 2}}


def record_of(**fields: dict[str, Any]) -> dict[str, Any]:
    """An Avro record ``R`` with one field per keyword (``type`` and maybe ``default``)."""
    return {"type": "record", "name": "R", "namespace": "t",
            "fields": [{"name": name, **spec} for name, spec in fields.items()]}


def compile_errors(fields_yaml: str, record: dict[str, Any]) -> list[str]:
    doc = load_yaml("fields:\n" + textwrap.indent(textwrap.dedent(fields_yaml), "  "), "t.yaml")
    col = _Collector(doc)
    compile_record(doc.value["fields"], record, ("fields",), col, {})
    return [str(e) for e in col.errors]


def compile_ok(fields_yaml: str, record: dict[str, Any]) -> RecordMapper:
    doc = load_yaml("fields:\n" + textwrap.indent(textwrap.dedent(fields_yaml), "  "), "t.yaml")
    col = _Collector(doc)
    mapper = compile_record(doc.value["fields"], record, ("fields",), col, {})
    assert mapper is not None, [str(e) for e in col.errors]
    return mapper


def mapped(mapper: RecordMapper, event: Any, record: dict[str, Any]) -> dict[str, Any]:
    """Map ``event`` and check the result is a valid instance of ``record`` (as the encoder will)."""
    out = mapper(event, META)
    assert fastavro.validation.validate(out, fastavro.parse_schema(record), raise_errors=False), out
    return out


def error_code(mapper: RecordMapper, event: Any) -> str:
    with pytest.raises(MappingError) as caught:
        mapper(event, META)
    return caught.value.code


# ---- sources ------------------------------------------------------------------------------------


def test_from_walks_dicts_and_list_indexes() -> None:
    rec = record_of(sku=STRING, title=OPT_STRING)
    m = compile_ok("""\
        sku: {from: data.items.1.sku, required: true}
        title: data.title            # a plain string is short for {from: ...}
        """, rec)
    out = mapped(m, {"data": {"title": "t", "items": [{"sku": "a"}, {"sku": "b"}]}}, rec)
    assert out == {"sku": "b", "title": "t"}
    assert error_code(m, {"data": {"items": [{"sku": "a"}]}}) == "map.required_missing"


def test_from_a_missing_path_uses_the_avro_default() -> None:
    rec = record_of(title=OPT_STRING, source={"type": "string", "default": "zendesk"})
    m = compile_ok("title: data.title\nsource: data.source\n", rec)
    assert mapped(m, {"data": {}}, rec) == {"title": None, "source": "zendesk"}
    assert mapped(m, {"data": {"title": None, "source": None}}, rec) == {"title": None, "source": "zendesk"}
    assert mapped(m, {"data": {"source": "web"}}, rec)["source"] == "web"


def test_unmapped_avro_fields_take_their_default() -> None:
    rec = record_of(title=STRING, source={"type": "string", "default": "zendesk"},
                    tags={"type": {"type": "array", "items": "string"}, "default": []})
    m = compile_ok("title: {from: t, required: true}\n", rec)
    assert mapped(m, {"t": "x"}, rec) == {"title": "x", "source": "zendesk", "tags": []}


def test_coalesce_takes_the_first_present_non_null_value_in_order() -> None:
    rec = record_of(plan=OPT_STRING)
    m = compile_ok("plan: {coalesce: [a.nick, b.nick, c]}\n", rec)
    assert mapped(m, {"a": {"nick": "A"}, "b": {"nick": "B"}, "c": "C"}, rec)["plan"] == "A"
    assert mapped(m, {"a": {"nick": None}, "b": {"nick": "B"}, "c": "C"}, rec)["plan"] == "B"
    assert mapped(m, {"b": {}, "c": "C"}, rec)["plan"] == "C"
    assert mapped(m, {"c": None}, rec)["plan"] is None


def test_coalesce_is_not_falsy_coalescing() -> None:
    rec = record_of(n={"type": ["null", "long"], "default": None}, flag={"type": ["null", "boolean"], "default": None})
    m = compile_ok("n: {coalesce: [a, b]}\nflag: {coalesce: [c, d]}\n", rec)
    assert mapped(m, {"a": 0, "b": 5, "c": False, "d": True}, rec) == {"n": 0, "flag": False}


def test_template_renders_paths_and_meta_names() -> None:
    rec = record_of(key=STRING, url=OPT_STRING)
    m = compile_ok("""\
        key: {template: "{tenant}:{data.id}:{$event_id}", required: true}
        url: {template: "https://{tenant}.example/{data.id}?vip={data.vip}"}
        """, rec)
    out = mapped(m, {"data": {"id": 4521, "vip": True}}, rec)
    assert out == {"key": "acme:4521:evt-1", "url": "https://acme.example/4521?vip=true"}


def test_template_with_a_missing_variable_is_missing_never_none_text() -> None:
    rec = record_of(url=OPT_STRING, key=STRING)
    m = compile_ok("""\
        url: {template: "https://x/{data.id}"}
        key: {template: "{tenant}:{data.id}", required: true}
        """, rec)
    assert error_code(m, {"data": {}}) == "map.required_missing"
    assert error_code(m, {"data": {"id": None}}) == "map.required_missing"
    defaulted = compile_ok('key: {template: "k-{data.id}", default: none}\nurl: {template: "u/{x}"}\n', rec)
    assert mapped(defaulted, {"data": {}}, rec) == {"key": "none", "url": None}


def test_const() -> None:
    rec = record_of(kind=STRING, n=LONG, enabled={"type": "boolean"})
    m = compile_ok("kind: {const: incident}\nn: {const: 7}\nenabled: {const: true}\n", rec)
    assert mapped(m, {}, rec) == {"kind": "incident", "n": 7, "enabled": True}


def test_meta_names() -> None:
    rec = record_of(tenant=STRING, event_id=STRING, source=STRING, integration=STRING, received=LONG)
    m = compile_ok("""\
        tenant: {from: $tenant, required: true}
        event_id: {from: $event_id, required: true}
        source: {from: $source, required: true}
        integration: {from: $integration, required: true}
        received: {from: $received_at, required: true}
        """, rec)
    assert mapped(m, {"tenant": "not-this-one"}, rec) == {
        "tenant": "acme", "event_id": "evt-1", "source": "zendesk", "integration": "demo",
        "received": 1_700_000_000_000,
    }


def test_unknown_meta_name_is_a_compile_error() -> None:
    (error,) = compile_errors("x: {from: $tennant}\n", record_of(x=OPT_STRING))
    assert "t.yaml:2: fields.x.from: unknown name '$tennant'" in error


# ---- map, numeric keys, booleans ----------------------------------------------------------------


def test_map_with_default() -> None:
    rec = record_of(severity={"type": "int"})
    m = compile_ok("severity: {from: p, map: {low: 3, med: 2, high: 1}, default: 2}\n", rec)
    assert [mapped(m, {"p": p}, rec)["severity"] for p in ("high", "low", "urgent")] == [1, 3, 2]
    assert mapped(m, {}, rec)["severity"] == 2
    assert mapped(m, {"p": None}, rec)["severity"] == 2
    assert mapped(m, {"p": {"nested": "high"}}, rec)["severity"] == 2


def test_map_to_null_means_the_default() -> None:
    rec = record_of(stage=OPT_STRING)
    m = compile_ok("stage: {from: s, map: {a: A, b: null}, default: Z}\n", rec)
    assert [mapped(m, {"s": s}, rec)["stage"] for s in ("a", "b", "c")] == ["A", "Z", "Z"]


@pytest.mark.parametrize("value", [1, "1", 1.0])
def test_numeric_yaml_keys_match_json_numbers_and_strings(value: Any) -> None:
    rec = record_of(label=STRING)
    m = compile_ok("label: {from: n, map: {1: one, '2': two}, default: other}\n", rec)
    assert mapped(m, {"n": value}, rec)["label"] == "one"


@pytest.mark.parametrize("value", [2, "2", 2.0])
def test_quoted_yaml_keys_match_json_numbers(value: Any) -> None:
    rec = record_of(label=STRING)
    m = compile_ok("label: {from: n, map: {1: one, '2': two}, default: other}\n", rec)
    assert mapped(m, {"n": value}, rec)["label"] == "two"


@pytest.mark.parametrize(("value", "expected"), [(True, "on-text"), (False, "off-text"), ("true", "on-text")])
def test_boolean_yaml_keys_match_json_booleans(value: Any, expected: str) -> None:
    """``map: {true: …, false: …}``: YAML reads the keys as booleans, JSON sends booleans (or "true")."""
    rec = record_of(label=STRING)
    m = compile_ok("label: {from: flag, map: {true: on-text, false: off-text}, default: unknown}\n", rec)
    assert mapped(m, {"flag": value}, rec)["label"] == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("yes", True), ("OFF", False), (" true ", True), ("0", False),
     (1, True), (0, False)],
)
def test_as_boolean(value: Any, expected: bool) -> None:
    rec = record_of(enabled={"type": "boolean", "default": False})
    m = compile_ok("enabled: {from: v, as: boolean}\n", rec)
    assert mapped(m, {"v": value}, rec)["enabled"] is expected


@pytest.mark.parametrize("value", [2, "maybe", 1.5, [], {}])
def test_as_boolean_rejects_what_is_not_a_boolean(value: Any) -> None:
    m = compile_ok("enabled: {from: v, as: boolean}\n", record_of(enabled={"type": "boolean", "default": False}))
    assert error_code(m, {"v": value}) == "map.type_error"


# ---- cond ---------------------------------------------------------------------------------------

COND = """\
out:
  required: true
  cond:
    - if: {path: kind, equals: 1}
      then: {const: one}
    - if: {path: kind, in: [a, b]}
      then: {template: "ab-{kind}"}
    - if: {path: flag, exists: true}
      then: {from: flag, as: string}
  else: {const: other}
"""


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"kind": 1}, "one"),
        ({"kind": "1"}, "one"),  # predicates compare as text, like map keys
        ({"kind": "b"}, "ab-b"),
        ({"kind": "a", "flag": "x"}, "ab-a"),  # the first matching branch wins
        ({"flag": False}, "false"),
        ({"flag": None}, "other"),  # exists: null is not there
        ({"kind": "z"}, "other"),
        ({}, "other"),
    ],
)
def test_cond_branches_and_else(event: dict[str, Any], expected: str) -> None:
    rec = record_of(out=STRING)
    assert mapped(compile_ok(COND, rec), event, rec)["out"] == expected


def test_cond_without_else_is_missing_when_nothing_matches() -> None:
    rec = record_of(out=OPT_STRING)
    m = compile_ok("""\
        out:
          cond:
            - if: {path: status, not_equals: active}
              then: {const: inactive}
        """, rec)
    assert mapped(m, {"status": "paused"}, rec)["out"] == "inactive"
    assert mapped(m, {"status": "active"}, rec)["out"] is None


# ---- each ---------------------------------------------------------------------------------------

CHANGES = record_of(changes={"type": {"type": "array", "items": {
    "type": "record", "name": "Change", "fields": [
        {"name": "sku", "type": "string"},
        {"name": "tenant", "type": "string"},
        {"name": "qty", "type": "long", "default": 1},
    ]}}})
EACH = """\
changes:
  each: ITEMS
  required: true
  fields:
    sku: {from: sku, required: true}
    tenant: {from: $tenant, required: true}
"""


def test_each_maps_a_list_of_records_with_paths_relative_to_the_item() -> None:
    m = compile_ok(EACH.replace("ITEMS", "order.lines"), CHANGES)
    out = mapped(m, {"order": {"lines": [{"sku": "a"}, {"sku": "b", "qty": 9}]}}, CHANGES)
    assert out == {"changes": [{"sku": "a", "tenant": "acme", "qty": 1}, {"sku": "b", "tenant": "acme", "qty": 1}]}


def test_each_over_the_event_wraps_one_object_into_a_one_item_list() -> None:
    m = compile_ok(EACH.replace("ITEMS", "$event"), CHANGES)
    assert mapped(m, {"sku": "solo"}, CHANGES) == {"changes": [{"sku": "solo", "tenant": "acme", "qty": 1}]}


def test_each_over_an_empty_list_is_an_empty_list() -> None:
    m = compile_ok(EACH.replace("ITEMS", "lines"), CHANGES)
    assert mapped(m, {"lines": []}, CHANGES) == {"changes": []}


def test_each_failures() -> None:
    m = compile_ok(EACH.replace("ITEMS", "lines"), CHANGES)
    assert error_code(m, {}) == "map.required_missing"
    assert error_code(m, {"lines": [{"sku": "a"}, {"nosku": 1}]}) == "map.required_missing"
    assert error_code(m, {"lines": "abc"}) == "map.type_error"
    assert error_code(m, {"lines": [{"sku": 5}]}) == "map.type_error"


def test_each_with_item_builds_a_list_of_values() -> None:
    rec = record_of(skus={"type": {"type": "array", "items": "string"}, "default": []},
                    ids={"type": {"type": "array", "items": "string"}, "default": []})
    m = compile_ok("""\
        skus: {each: lines, item: {from: sku, required: true}}
        ids: {each: ids, item: {from: $event, as: string, required: true}}
        """, rec)
    out = mapped(m, {"lines": [{"sku": "a"}, {"sku": "b"}], "ids": [1, "2", True]}, rec)
    assert out == {"skus": ["a", "b"], "ids": ["1", "2", "true"]}
    assert mapped(m, {}, rec) == {"skus": [], "ids": []}


def test_each_into_a_field_that_is_not_a_list_is_a_compile_error() -> None:
    (error,) = compile_errors("n: {each: lines, item: x, default: 1}\n", record_of(n=LONG))
    assert "fields.n.each: each builds a list, but the Avro type is long" in error


# ---- divide_by, decimals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cents", "units"),
    [(4999, "49.99"), ("4999", "49.99"), (4999.0, "49.99"), (120000, "1200.00"), (0, "0.00"), (-250, "-2.50")],
)
def test_divide_by_then_decimal_quantized_to_the_avro_scale(cents: Any, units: str) -> None:
    rec = record_of(mrr=MONEY)
    m = compile_ok("mrr: {from: amount, divide_by: 100, required: true}\n", rec)
    value = mapped(m, {"amount": cents}, rec)["mrr"]
    assert value == Decimal(units)
    assert str(value) == units  # quantized: exactly two places


@pytest.mark.parametrize(("raw", "units"), [(12345, "12.34"), (12355, "12.36"), (12346, "12.35")])
def test_decimal_rounding_is_half_even(raw: int, units: str) -> None:
    rec = record_of(mrr=MONEY)
    m = compile_ok("mrr: {from: amount, divide_by: 1000, required: true}\n", rec)
    assert str(mapped(m, {"amount": raw}, rec)["mrr"]) == units


@pytest.mark.parametrize("value", ["abc", True, [1], {"a": 1}, "Infinity", "NaN"])
def test_divide_by_and_decimal_reject_what_is_not_a_number(value: Any) -> None:
    m = compile_ok("mrr: {from: amount, divide_by: 100, required: true}\n", record_of(mrr=MONEY))
    assert error_code(m, {"amount": value}) == "map.type_error"


def test_as_decimal_needs_a_decimal_field() -> None:
    (error,) = compile_errors("n: {from: v, as: decimal, default: 1}\n", record_of(n=LONG))
    assert "fields.n.as: as: decimal needs an Avro decimal field, this one is long" in error


# ---- timestamps ---------------------------------------------------------------------------------

AT_MS = 1795169700000  # 2026-11-20T10:15:00Z


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-20T10:15:00Z", AT_MS),
        ("2026-11-20T10:15:00.250Z", AT_MS + 250),
        ("2026-11-20T12:15:00+02:00", AT_MS),
        ("2026-11-20T05:15:00-05:00", AT_MS),
        ("2026-11-20T10:15:00", AT_MS),  # naive means UTC
        (1795169700, AT_MS),  # epoch seconds
        (1795169700.5, AT_MS + 500),
        ("1795169700", AT_MS),
        (AT_MS, AT_MS),  # epoch milliseconds stay as they are
        (float(AT_MS), AT_MS),
    ],
)
def test_as_timestamp_ms(value: Any, expected: int) -> None:
    rec = record_of(at=TIMESTAMP)
    m = compile_ok("at: {from: t, as: timestamp_ms, required: true}\n", rec)
    assert m({"t": value}, META)["at"] == expected


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01T00:00:00Z", True, {"s": 1}, [1], "nan", "inf"])
def test_as_timestamp_ms_rejects_what_is_not_a_time(value: Any) -> None:
    m = compile_ok("at: {from: t, as: timestamp_ms, required: true}\n", record_of(at=TIMESTAMP))
    assert error_code(m, {"t": value}) == "map.type_error"


def test_as_iso8601() -> None:
    rec = record_of(at=STRING)
    m = compile_ok("at: {from: t, as: iso8601, required: true}\n", rec)
    assert mapped(m, {"t": 1795169700}, rec)["at"] == "2026-11-20T10:15:00.000Z"
    assert mapped(m, {"t": "2026-11-20T12:15:00.5+02:00"}, rec)["at"] == "2026-11-20T10:15:00.500Z"


@pytest.mark.parametrize(("value", "expected"), [(7, 7.0), (2.5, 2.5), ("12", 12.0),
                                                 ("2026-11-20T10:15:00Z", float(AT_MS))])
def test_version_number(value: Any, expected: float) -> None:
    assert coerce.version_number(value) == expected


@pytest.mark.parametrize("value", [True, None, [1], "not a time"])
def test_version_number_rejects_what_cannot_order(value: Any) -> None:
    with pytest.raises(MappingError):
        coerce.version_number(value)


# ---- required_missing vs type_error -------------------------------------------------------------


def test_required_missing_vs_type_error() -> None:
    m = compile_ok("title: {from: t, required: true}\n", record_of(title=STRING))
    assert error_code(m, {}) == "map.required_missing"
    assert error_code(m, {"t": None}) == "map.required_missing"
    assert error_code(m, {"t": {"text": "nested"}}) == "map.type_error"
    assert error_code(m, {"t": 5}) == "map.type_error"
    assert error_code(m, "not an object") == "map.required_missing"


@pytest.mark.parametrize(("target", "value"), [("int", "abc"), ("int", 1.5), ("float", "x"), ("string", {"a": 1}),
                                                ("long", True)])
def test_failed_coercion_is_a_type_error(target: str, value: Any) -> None:
    avro = {"int": "int", "long": "long", "float": "double", "string": "string"}[target]
    m = compile_ok(f"x: {{from: v, as: {target}, required: true}}\n", record_of(x={"type": avro}))
    assert error_code(m, {"v": value}) == "map.type_error"


def test_coercion_error_messages_name_the_field() -> None:
    m = compile_ok("title: {from: t, required: true}\n", record_of(title=STRING))
    with pytest.raises(MappingError, match="field 'title'"):
        m({"t": [1]}, META)


def test_an_int_fits_a_double_field_and_enums_take_their_symbols() -> None:
    rec = record_of(x={"type": "double"}, stage={"type": {"type": "enum", "name": "Stage", "symbols": ["a", "b"]}})
    m = compile_ok("x: {from: x, required: true}\nstage: {from: s, required: true}\n", rec)
    assert mapped(m, {"x": 3, "s": "b"}, rec) == {"x": 3, "stage": "b"}
    assert error_code(m, {"x": 3, "s": "c"}) == "map.type_error"

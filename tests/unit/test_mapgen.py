"""The generated mapping functions (router.spec.mapgen) agree with the reference closures.

``compile_record`` describes each output field as a FieldPlan whose ``closure`` is the plain,
readable form of the field; mapgen writes the common forms inline. Both run on the same events:
same record out, or the same MappingError (code and message) raised.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from router.errors import MappingError
from router.spec.mapping import Meta, _Collector, compile_record
from router.spec.yamlsrc import load_yaml
from tests.unit.test_mapping_properties import CATALOG, NAMES, named_events, replacements

META = Meta(tenant="acme", source="zendesk", event_id="evt-1", integration="demo", received_at=1_700_000_000_000)
PROPERTY = settings(max_examples=300, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# Every source form and modifier, including the ones mapgen leaves to the closures.
FIELDS = """
key: {template: "{tenant}:{data.id}/{$event_id}", required: true}
title: {from: data.title, required: true}
level: {from: data.level, map: {low: 3, "2": 2, true: 1}, default: 2}
at: {from: data.at, as: timestamp_ms}
label: {from: data.label, as: string, default: "none"}
first: {coalesce: [data.nick, data.title]}
amount: {from: data.cents, divide_by: 100}
who: {from: $tenant, required: true}
when: {from: $received_at, required: true}
kind: {const: "ticket"}
flag: {from: data.flag, as: boolean, default: false}
pick: {cond: [{if: {path: data.level, equals: low}, then: {const: "quiet"}}], else: {from: data.title}}
item0: data.items.0
names: {each: data.items, item: {from: name, required: true}}
whole: {template: "{$event}"}
"""
RECORD = {"type": "record", "name": "R", "namespace": "t", "fields": [
    {"name": "key", "type": "string"},
    {"name": "title", "type": "string"},
    {"name": "level", "type": "int"},
    {"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": None},
    {"name": "label", "type": "string"},
    {"name": "first", "type": ["null", "string"], "default": None},
    {"name": "amount", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}],
     "default": None},
    {"name": "who", "type": "string"},
    {"name": "when", "type": "long"},
    {"name": "kind", "type": "string"},
    {"name": "flag", "type": "boolean"},
    {"name": "pick", "type": ["null", "string"], "default": None},
    {"name": "item0", "type": ["null", "string", "long", "double", "boolean"], "default": None},
    {"name": "names", "type": ["null", {"type": "array", "items": "string"}], "default": None},
    {"name": "whole", "type": ["null", "string"], "default": None},
    {"name": "unmapped", "type": "string", "default": "d"},
]}


def compiled(fields_yaml: str, record: dict[str, Any]) -> Any:
    doc = load_yaml("fields:\n" + textwrap.indent(textwrap.dedent(fields_yaml), "  "), "t.yaml")
    col = _Collector(doc)
    mapper = compile_record(doc.value["fields"], record, ("fields",), col, {})
    assert mapper is not None, [str(e) for e in col.errors]
    return mapper.build  # type: ignore[attr-defined]


SYNTHETIC = compiled(FIELDS, RECORD)


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except MappingError as exc:
        return "error", (exc.code, str(exc))


def reference(build: Any, event: Any, meta: Meta) -> dict[str, Any]:
    return {plan.name: plan.closure(event, event, meta) for plan in build.plans}


def assert_same(build: Any, event: Any) -> None:
    got = outcome(build, event, event, META)
    want = outcome(reference, build, event, META)
    assert got == want
    if got[0] == "ok":  # equal values of the same types: 1 == 1.0 == True must not hide a difference
        assert [type(v) for v in got[1].values()] == [type(v) for v in want[1].values()]


leaf = replacements
synthetic_events = st.fixed_dictionaries({}, optional={
    "data": st.fixed_dictionaries({}, optional={
        "id": leaf | st.integers() | st.text(max_size=4),
        "title": leaf | st.text(max_size=6),
        "level": leaf | st.sampled_from(["low", "2", 2, 2.0, True, "high"]),
        "at": leaf | st.sampled_from(["2026-11-20T10:15:00Z", " 2026-11-20T10:15:00z", "2026-11-20", "1700000000",
                                      "2026-13-01T00:00:00Z", 1_700_000_000, 1.7e12]),
        "label": leaf, "nick": leaf, "cents": leaf, "flag": leaf | st.sampled_from(["yes", "no", 1, 0]),
        "items": st.lists(st.fixed_dictionaries({}, optional={"name": leaf}) | leaf, max_size=3) | leaf,
    }) | leaf,
}) | leaf


@PROPERTY
@given(event=synthetic_events)
@example(event={"data": {"id": 7, "title": "t", "level": "low", "at": "2026-11-20T10:15:00Z", "items": []}})
@example(event={"data": {"id": True, "title": "t"}})  # a bool is not an int: the template's slow path
@example(event={"data": {"id": 1.5, "title": "t"}})
def test_generated_build_matches_the_closures_on_every_form(event: Any) -> None:
    assert_same(SYNTHETIC, event)


@PROPERTY
@given(case=named_events)
def test_generated_build_matches_the_closures_for_the_shipped_integrations(case: tuple[str, Any]) -> None:
    name, event = case
    assert_same(CATALOG.by_name(name).mapper.build, event)  # type: ignore[attr-defined]


def test_the_common_forms_are_inline_and_the_rest_call_closures() -> None:
    source = SYNTHETIC.__source__
    by_form = {plan.name: plan.source for plan in SYNTHETIC.plans}
    assert by_form == {"key": "template", "title": "path", "level": "path", "at": "path", "label": "path",
                       "first": "closure", "amount": "closure", "who": "meta", "when": "meta", "kind": "const",
                       "flag": "path", "pick": "closure", "item0": "closure", "names": "closure",
                       "whole": "closure", "unmapped": "const"}
    assert "meta.tenant" in source and "meta.event_id" in source


@pytest.mark.parametrize("name", NAMES)
def test_no_spec_text_reaches_the_generated_source(name: str) -> None:
    build = CATALOG.by_name(name).mapper.build  # type: ignore[attr-defined]
    for plan in build.plans:
        assert repr(plan.name) not in build.__source__ and f'"{plan.name}"' not in build.__source__


def test_hostile_names_and_literals_stay_data() -> None:
    record = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}]}
    build = compiled('a: {template: "\\"); import os #{data.x}", required: true}', record)
    assert build({"data": {"x": 1}}, {"data": {"x": 1}}, META) == {"a": '"); import os #1'}
    assert "import os" not in build.__source__

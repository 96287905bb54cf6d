"""Pure registry logic: Avro identity, compatibility levels, and the fold of the _schemas log."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st

from services.registry.app import confluent_errors
from services.registry.compat import (
    Compatibility,
    InvalidSchemaError,
    check_compatibility,
    check_pair,
    parse_avro,
    parse_compatibility,
)
from services.registry.store import (
    INCOMPATIBLE,
    SUBJECT_NOT_FOUND,
    SUBJECT_NOT_SOFT_DELETED,
    Deleted,
    Refusal,
    Registered,
    RegistryState,
    config_record,
    delete_record,
    schema_record,
    sync_record,
)


def record(fields: list[dict[str, object]], name: str = "Order") -> str:
    return json.dumps({"type": "record", "name": name, "namespace": "shop", "fields": fields})


V1 = parse_avro(record([{"name": "id", "type": "string"}]))
V2_DEFAULT = parse_avro(record([{"name": "id", "type": "string"}, {"name": "note", "type": "string", "default": ""}]))
V2_NO_DEFAULT = parse_avro(record([{"name": "id", "type": "string"}, {"name": "note", "type": "string"}]))
V2_TYPE_CHANGED = parse_avro(record([{"name": "id", "type": "int"}]))


# -- identity ----------------------------------------------------------------------------------


def test_layout_key_order_and_namespace_spelling_do_not_change_identity() -> None:
    spaced = parse_avro(json.dumps(json.loads(V1.text), indent=4))
    reordered = parse_avro(
        '{"fields": [{"type": "string", "name": "id"}], "namespace": "shop", "name": "Order", "type": "record"}'
    )
    full_name = parse_avro('{"type": "record", "name": "shop.Order", "fields": [{"name": "id", "type": "string"}]}')
    assert spaced.fingerprint == reordered.fingerprint == full_name.fingerprint == V1.fingerprint


@pytest.mark.parametrize(
    "field",
    [
        {"name": "id", "type": "string", "default": "x"},
        {"name": "id", "type": "string", "doc": "the order id"},
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
    ],
)
def test_defaults_docs_and_logical_types_change_identity(field: dict[str, object]) -> None:
    # Parsing Canonical Form would call these equal; readers would then get the wrong schema.
    assert parse_avro(record([field])).fingerprint != V1.fingerprint


def test_text_is_compact_and_keeps_the_submitters_key_order() -> None:
    parsed = parse_avro('{ "type" : "string" }')
    assert parsed.text == '{"type":"string"}'


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not json", "not JSON"),
        ('{"type": "record", "name": "A"}', "fields"),
        ('{"type": "recrd", "name": "A", "fields": []}', "recrd"),
    ],
)
def test_invalid_avro_raises_with_the_parsers_message(text: str, fragment: str) -> None:
    with pytest.raises(InvalidSchemaError, match=fragment) as caught:
        parse_avro(text)
    assert caught.value.message.startswith("Invalid schema")


# -- levels and checks -------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["backward", "BACKWARD", " Full_Transitive ", "none"])
def test_levels_parse_in_any_case(raw: str) -> None:
    assert parse_compatibility(raw) is not None


@pytest.mark.parametrize("raw", ["", "SIDEWAYS", None, 3])
def test_unknown_levels_are_none(raw: object) -> None:
    assert parse_compatibility(raw) is None


def test_adding_a_field_with_a_default_is_backward_and_forward_compatible() -> None:
    assert check_pair(Compatibility.FULL, V2_DEFAULT, V1) == []


def test_adding_a_field_without_default_breaks_backward_only() -> None:
    backward = check_pair(Compatibility.BACKWARD, V2_NO_DEFAULT, V1, old_version=1)
    assert backward and "reader_field_missing_default_value" in backward[0] and "version 1" in backward[0]
    assert check_pair(Compatibility.FORWARD, V2_NO_DEFAULT, V1) == []


def test_removing_a_field_without_default_breaks_forward_only() -> None:
    assert check_pair(Compatibility.BACKWARD, V1, V2_NO_DEFAULT) == []
    assert check_pair(Compatibility.FORWARD, V1, V2_NO_DEFAULT)


def test_changing_a_type_breaks_both_directions() -> None:
    assert len(check_pair(Compatibility.FULL, V2_TYPE_CHANGED, V1)) == 2
    assert check_pair(Compatibility.NONE, V2_TYPE_CHANGED, V1) == []


def test_transitive_levels_check_every_version_and_plain_levels_only_the_latest() -> None:
    # v1 has f:int, v2 drops it, v3 brings f back as a string with a default: v3 reads v2's
    # data (no f, default used) but not v1's (f is an int).
    v1 = parse_avro(record([{"name": "id", "type": "string"}, {"name": "f", "type": "int"}]))
    v3 = parse_avro(record([{"name": "id", "type": "string"}, {"name": "f", "type": "string", "default": ""}]))
    history = [(1, v1), (2, V1)]
    assert check_compatibility(Compatibility.BACKWARD, v3, history).is_compatible
    result = check_compatibility(Compatibility.BACKWARD_TRANSITIVE, v3, history)
    assert not result.is_compatible
    assert any("version 1" in message for message in result.messages)


def test_an_empty_history_always_passes() -> None:
    assert check_compatibility(Compatibility.FULL_TRANSITIVE, V2_TYPE_CHANGED, []).is_compatible


# -- the fold ----------------------------------------------------------------------------------


def apply(state: RegistryState, rec: tuple[bytes, bytes]) -> Registered | Deleted | None:
    applied = state.apply(rec[1])
    return applied[1] if applied else None


def test_ids_count_distinct_schemas_and_versions_count_per_subject() -> None:
    state = RegistryState()
    assert apply(state, schema_record("a", V1, "n1")) == Registered(1, 1)
    assert apply(state, schema_record("a", V2_DEFAULT, "n2")) == Registered(2, 2)
    assert apply(state, schema_record("b", V1, "n3")) == Registered(1, 1)
    # A racer registering the same schema again gets the same answer and no new version.
    assert apply(state, schema_record("a", V1, "n4")) == Registered(1, 1)
    assert [v.version for v in state.versions("a")] == [1, 2]


def test_soft_delete_hides_versions_and_reregistering_continues_numbering() -> None:
    state = RegistryState()
    apply(state, schema_record("a", V1, "n1"))
    apply(state, schema_record("a", V2_DEFAULT, "n2"))
    assert apply(state, delete_record("a", None, permanent=False, nonce="d1")) == Deleted([1, 2])
    assert state.subject_names() == [] and state.subject_names(deleted=True) == ["a"]
    assert apply(state, schema_record("a", V1, "n3")) == Registered(1, 3)
    assert state.schemas_by_id[2].text == V2_DEFAULT.text  # ids outlive their subjects


def test_plans_refuse_incompatible_and_premature_permanent_deletes() -> None:
    state = RegistryState()
    apply(state, schema_record("a", V1, "n1"))
    assert state.plan_register("a", V1) == Registered(1, 1)
    assert state.plan_register("a", V2_DEFAULT) is None
    refusal = state.plan_register("a", V2_NO_DEFAULT)
    assert isinstance(refusal, Refusal) and refusal.error_code == INCOMPATIBLE
    apply(state, config_record("a", Compatibility.NONE))
    assert state.plan_register("a", V2_NO_DEFAULT) is None
    assert state.plan_delete("nope", None, permanent=False) == Refusal(SUBJECT_NOT_FOUND, "Subject 'nope' not found.")
    premature = state.plan_delete("a", None, permanent=True)
    assert isinstance(premature, Refusal) and premature.error_code == SUBJECT_NOT_SOFT_DELETED


def test_config_records_set_and_clear_levels() -> None:
    state = RegistryState()
    apply(state, config_record(None, Compatibility.FULL))
    apply(state, config_record("a", Compatibility.NONE))
    assert state.level(None) is Compatibility.FULL
    assert state.level("a") is Compatibility.NONE
    assert state.level("b") is Compatibility.FULL
    apply(state, config_record("a", None))
    apply(state, config_record(None, None))
    assert state.level("a") is Compatibility.BACKWARD


def test_unknown_record_kinds_and_tombstones_are_skipped() -> None:
    state = RegistryState()
    assert state.apply(orjson.dumps({"kind": "from-the-future"})) is None
    assert state.apply(None) is None
    assert state.apply(sync_record("x")[1]) is None


# -- compaction safety (property) --------------------------------------------------------------

POOL = [V1, V2_DEFAULT, V2_NO_DEFAULT, V2_TYPE_CHANGED, parse_avro('"string"')]
operation = st.one_of(
    st.tuples(st.just("schema"), st.sampled_from("abc"), st.integers(0, len(POOL) - 1)),
    st.tuples(st.just("delete"), st.sampled_from("abc"), st.booleans(), st.one_of(st.none(), st.integers(1, 4))),
    st.tuples(st.just("config"), st.sampled_from([None, "a", "b"]), st.sampled_from([None, *Compatibility])),
    st.tuples(st.just("sync")),
)


def build_log(operations: list[tuple[object, ...]]) -> list[tuple[bytes, bytes]]:
    log = []
    for n, op in enumerate(operations):
        nonce = f"n{n}"
        if op[0] == "schema":
            log.append(schema_record(str(op[1]), POOL[int(op[2])], nonce))  # type: ignore[call-overload]
        elif op[0] == "delete":
            log.append(delete_record(str(op[1]), op[3], permanent=bool(op[2]), nonce=nonce))  # type: ignore[arg-type]
        elif op[0] == "config":
            log.append(config_record(op[1], op[2]))  # type: ignore[arg-type]
        else:
            log.append(sync_record(nonce))
    return log


def compact(log: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """What Kafka compaction may leave: the last record per key, in log order."""
    last = {key: offset for offset, (key, _) in enumerate(log)}
    return [rec for offset, rec in enumerate(log) if last[rec[0]] == offset]


def snapshot(state: RegistryState) -> object:
    return (
        {i: e.text for i, e in state.schemas_by_id.items()},
        {n: [(v.version, v.schema_id, v.deleted) for v in s.versions] for n, s in state.subjects.items()},
        state.global_level,
        state.subject_levels,
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(operation, max_size=30))
def test_replaying_a_compacted_log_gives_the_same_ids_and_versions(operations: list[tuple[object, ...]]) -> None:
    log = build_log(operations)
    full, compacted = RegistryState(), RegistryState()
    for rec in log:
        full.apply(rec[1])
    for rec in compact(log):
        compacted.apply(rec[1])
    assert snapshot(compacted) == snapshot(full)


# -- the HTTP error boundary -------------------------------------------------------------------


def test_unexpected_exceptions_become_50001_without_a_stack_trace() -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        raise ValueError("secret internals")

    response = asyncio.run(confluent_errors(make_mocked_request("GET", "/subjects"), broken))
    assert isinstance(response, web.Response) and response.status == 500
    body = orjson.loads(response.body)  # type: ignore[arg-type]
    assert body == {"error_code": 50001, "message": "internal error (ValueError); see the registry log"}


def test_routing_errors_get_the_confluent_body() -> None:
    async def missing(request: web.Request) -> web.StreamResponse:
        raise web.HTTPNotFound()

    response = asyncio.run(confluent_errors(make_mocked_request("GET", "/nope"), missing))
    assert isinstance(response, web.Response) and response.status == 404
    assert orjson.loads(response.body) == {"error_code": 404, "message": "Not Found"}  # type: ignore[arg-type]

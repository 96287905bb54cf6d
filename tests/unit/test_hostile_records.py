"""Hostile input is normal input (issue 15): ``prepare`` turns every record into candidates or
coded failures — deep nesting, huge and non-finite numbers, malformed headers included — and the
DLQ headers and displays of such records are built without raising."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router import headers as h
from router.errors import ValidateError
from router.pipeline.records import Inbound
from router.pipeline.stages import RoutingTable, dlq_headers, prepare
from router.redact import DEFAULT_FIELDS, TOO_DEEP, readable, redact
from router.spec.load import load_catalog

ROOT = Path(__file__).resolve().parents[2]
CATALOG = load_catalog(ROOT / "integrations", ROOT / "schemas" / "avro")
TABLE = RoutingTable.build(CATALOG.integrations, {i.name: n for n, i in enumerate(CATALOG.integrations, start=1)})
PROPERTY = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def nested(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def nested_json(depth: int) -> str:
    """JSON text of ``depth`` nested arrays (encoders refuse to write it; partners do not)."""
    return "[" * depth + '"x"' + "]" * depth


def zendesk(**ticket: Any) -> dict[str, Any]:
    return {"event_id": "e1", "type": "ticket.escalated", "sequence": ticket.pop("sequence", 1),
            "occurred_at": "2026-11-20T10:15:00Z",
            "data": {"ticket": {"id": 1, "title": "down", "priority": "high", **ticket}}}


def run(event: Any, headers: list[tuple[str, bytes | None]] | None = None, raw: bytes | None = None) -> Any:
    value = raw if raw is not None else orjson.dumps(event)
    inbound = Inbound("ingest.zendesk", 0, 7, 1_700_000_000_000, b"1", value,
                      [(h.TENANT, b"acme"), *(headers or [])])
    return prepare(inbound, TABLE, now_ms=1_700_000_000_000)


def codes(prepared: Any) -> list[str]:
    return [f.error.code for f in prepared.failures]


def test_a_title_nested_a_thousand_deep_is_a_coded_failure_not_a_crash() -> None:
    body = orjson.dumps(zendesk(title="TITLE")).replace(b'"TITLE"', nested_json(1000).encode())
    deep = run(None, raw=body)  # the 2 KB webhook that took the pipeline down
    assert codes(deep) == ["map.type_error"]
    assert "[[[" in deep.failures[0].error.message and len(deep.failures[0].error.message) < 300


def test_versions_must_be_finite_numbers_in_the_int64_range() -> None:
    for version in ('"Infinity"', '"NaN"', '"-Infinity"', "9" * 23, '"' + "1" * 5000 + '"', str(2**63), "1e300"):
        body = orjson.dumps(zendesk(sequence="SEQ")).replace(b'"SEQ"', version.encode())
        assert codes(run(None, raw=body)) == ["validate.bad_version"], version[:20]
    assert not run(zendesk(sequence=2**62)).failures


def test_a_malformed_received_at_header_is_a_bad_header() -> None:
    for raw in (b"9" * 5000, b"abc", b"-1", "١٢".encode()):
        assert codes(run(zendesk(), [(h.RECEIVED_AT, raw)])) == ["validate.bad_header"], raw
    assert not run(zendesk(), [(h.RECEIVED_AT, b"1700000000000")]).failures


def test_dlq_headers_of_a_record_with_junk_attempts_start_counting_again() -> None:
    inbound = Inbound("ingest.zendesk", 0, 7, 0, None, b"{}", [(h.ATTEMPTS, b"abc"), (h.FIRST_FAILED_AT, b"5")])
    headers = dict(dlq_headers(inbound, ValidateError("x", code="validate.bad_header"), group="g", integration=None,
                               now_ms=9))
    assert headers[h.ATTEMPTS] == b"1"
    inbound.headers = [(h.ATTEMPTS, b"9" * 5000)]
    assert dict(dlq_headers(inbound, ValidateError("x"), group="g", integration=None, now_ms=9))[h.ATTEMPTS] == b"1"


def test_displays_of_deep_values_are_bounded() -> None:
    assert redact(nested(5000), DEFAULT_FIELDS) is not None  # no RecursionError
    shown = redact({"a": nested(100)}, DEFAULT_FIELDS)
    assert TOO_DEEP in orjson.dumps(shown).decode()
    value = ('{"a": ' + nested_json(1000) + "}").encode()
    view = readable(value, DEFAULT_FIELDS)
    assert view.kind == "json" and TOO_DEEP in view.short(10_000)


hostile_scalars = (st.integers(min_value=-(10**30), max_value=10**30) | st.floats() | st.text(max_size=30)
                   | st.sampled_from(["Infinity", "NaN", "1e999", "", "\x00", "2026-13-45T99:99:99Z"]))


@PROPERTY
@given(value=hostile_scalars | st.integers(1, 1500).map(nested) | st.recursive(
           hostile_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
           max_leaves=10),
       where=st.sampled_from(["title", "priority", "id", "sequence", "event_id", "occurred_at", "type"]),
       header=st.sampled_from([h.RECEIVED_AT, h.ATTEMPTS, h.TRACEPARENT, h.TENANT, h.INTEGRATION]),
       header_value=st.binary(max_size=60) | st.integers(1, 6000).map(lambda n: b"9" * n))
def test_prepare_is_total_on_hostile_values_and_headers(value: Any, where: str, header: str,
                                                        header_value: bytes) -> None:
    event = zendesk()
    if where in ("title", "priority", "id"):
        event["data"]["ticket"][where] = value
    else:
        event[where] = value
    try:
        body = orjson.dumps(event)
    except orjson.JSONEncodeError:  # not JSON (e.g. nesting orjson refuses): the raw bytes go as they are
        body = repr(event).encode()[:100_000]
    prepared = run(None, [(header, header_value)], raw=body)
    assert prepared.candidates or prepared.failures or prepared.ignored
    for failure in prepared.failures:
        assert failure.error.code.split(".")[0] in {"decode", "validate", "map", "encode", "internal"}
        headers = dlq_headers(prepared.inbound, failure.error, group="g", integration=failure.integration, now_ms=1)
        assert dict(headers)[h.ERROR_CODE] == failure.error.code.encode()


def test_identities_past_their_limits_are_coded_failures() -> None:
    """Event ids and entity keys are indexed in Redis and Kafka keys: a record straight on an ingest
    topic (past the gateway's limits) fails with its own code instead of writing a 500 KB key."""
    long_id = {**zendesk(), "event_id": "e" * (h.MAX_EVENT_ID_CHARS + 1)}
    assert codes(run(long_id)) == ["validate.event_id_too_long"]
    assert not run({**zendesk(), "event_id": "e" * h.MAX_EVENT_ID_CHARS}).failures
    long_key = zendesk(id="k" * (h.MAX_ENTITY_KEY_CHARS + 1))
    assert codes(run(long_key)) == ["validate.entity_key_too_long"]
    assert not run(zendesk(id="k" * (h.MAX_ENTITY_KEY_CHARS - 10))).failures

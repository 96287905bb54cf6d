"""router.codec: the one registry-framed Avro codec (framing, schema cache, errors by kind)."""

from __future__ import annotations

import contextlib
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from router import codec

SCHEMA_TEXT = (Path(__file__).resolve().parents[2] / "schemas" / "avro" / "com.example.pagerduty.Incident.avsc"
               ).read_text()
PARSED = fastavro.parse_schema(orjson.loads(SCHEMA_TEXT))
RECORD = {"incident_key": "acme:1", "title": "Checkout down", "severity": 2,
          "occurred_at": datetime(2026, 11, 20, 10, 15, tzinfo=UTC), "source": "zendesk", "requester_email": None,
          "ticket_url": "https://acme.example/t/1", "tags": ["a", "b"]}


def _codec() -> tuple[codec.Codec, list[int]]:
    asked: list[int] = []

    def fetch(schema_id: int) -> str:
        asked.append(schema_id)
        if schema_id != 7:
            raise LookupError(f"Schema {schema_id} not found")
        return SCHEMA_TEXT

    return codec.Codec(fetch), asked


def test_frame_is_magic_zero_and_a_big_endian_id() -> None:
    value = codec.encode(RECORD, 0x01020304, codec.writer_of(PARSED))
    assert value[:5] == b"\x00\x01\x02\x03\x04"
    assert codec.schema_id_of(value) == 0x01020304
    assert codec.frame(7, b"xy") == b"\x00\x00\x00\x00\x07xy"


@pytest.mark.parametrize("value", [None, b"", b"\x00\x00\x00\x07", b"\x01\x00\x00\x00\x07\x02", b"{}"])
def test_not_framed(value: bytes | None) -> None:
    assert codec.schema_id_of(value) is None
    held, asked = _codec()
    assert held.missing(value) is None
    with pytest.raises(codec.NotFramed, match="not Confluent-framed"):
        held.decode_fetching(value)
    assert asked == []


def test_schemas_are_fetched_once_and_decode_like_fastavro() -> None:
    held, asked = _codec()
    value = codec.encode(RECORD, 7, codec.writer_of(PARSED))
    assert held.missing(value) == 7
    with pytest.raises(codec.UnknownSchema, match="schema id 7 is not in the registry"):
        held.decode(value)  # decode never fetches
    assert held.decode_fetching(value) == RECORD
    assert held.decode_fetching(value) == held.decode(value) == RECORD
    assert asked == [7]
    assert held.missing(value) is None
    assert codec.decode(value, {7: PARSED}) == RECORD, "a plain mapping of parsed schemas works too"


def test_unknown_schema_and_corrupt_avro_are_told_apart() -> None:
    held, asked = _codec()
    with pytest.raises(codec.UnknownSchema, match="schema id 9 could not be fetched: Schema 9 not found") as unknown:
        held.decode_fetching(codec.frame(9, b"\x02"))
    assert unknown.value.schema_id == 9
    with pytest.raises(codec.InvalidAvro, match="invalid Avro for schema id 7"):
        held.decode_fetching(codec.frame(7, b"\xff\xff\xff"))
    assert asked == [9, 7]


@given(st.binary(max_size=64))
def test_any_body_decodes_or_raises_a_value_error(body: bytes) -> None:
    held = codec.Codec()
    held.add(7, PARSED)
    with contextlib.suppress(ValueError):  # anything else fails the test
        held.decode(codec.frame(7, body))


@given(st.text(max_size=30), st.integers(-(2**31), 2**31 - 1), st.lists(st.text(max_size=5), max_size=4),
       st.one_of(st.none(), st.text(max_size=10)))
def test_decode_equals_fastavro_schemaless_reader(title: str, severity: int, tags: list[str],
                                                  email: str | None) -> None:
    record: dict[str, Any] = {**RECORD, "title": title, "severity": severity, "tags": tags, "requester_email": email}
    value = codec.encode(record, 7, codec.writer_of(PARSED))
    held = codec.Codec()
    held.add(7, PARSED)
    assert held.decode(value) == fastavro.schemaless_reader(io.BytesIO(value[5:]), PARSED, None)

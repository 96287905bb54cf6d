"""DLQ tooling, the pure parts: filters, fingerprints, redaction, replayed headers, rates."""

from __future__ import annotations

import copy
from typing import Any, cast

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from router import headers as h
from router.dlq.filters import DlqFilter, iso_ms, parse_time
from router.dlq.replay import DROPPED_HEADERS, chunk_size_for, cursor_group, destination_of, parse_rate, replay_headers
from router.errors import ConfigError
from router.redact import (
    DEFAULT_FIELDS,
    MASK,
    fields_from_env,
    is_sensitive,
    readable,
    redact,
    redact_text,
)

NOW = 1_795_000_000_000  # 2026-11-18T...Z
HDRS = {h.ERROR_CODE: "map.required_missing", h.TENANT: "acme", h.INTEGRATION: "zd-pd", h.EVENT_ID: "e1"}


# ---- filters --------------------------------------------------------------------------------


def test_an_empty_filter_matches_everything() -> None:
    f = DlqFilter.from_options(now_ms=NOW)
    assert f.is_empty
    assert f.matches({}, 0)
    assert f.matches(HDRS, NOW)
    assert f.describe() == "all records"


@pytest.mark.parametrize(("options", "expected"), [
    ({"codes": ["map.required_missing"]}, True),
    ({"codes": ["map.*"]}, True),
    ({"codes": ["decode.*"]}, False),
    ({"codes": ["decode.*,map.*"]}, True),  # comma-separated = any of
    ({"codes": ["decode.*", "map.required_missing"]}, True),  # repeated = any of
    ({"tenants": ["acme"]}, True),
    ({"tenants": ["globex"]}, False),
    ({"integrations": ["zd-pd"], "tenants": ["acme"]}, True),
    ({"integrations": ["zd-pd"], "tenants": ["globex"]}, False),  # all criteria must hold
    ({"event_ids": ["e1"]}, True),
    ({"event_ids": ["e1,e2"]}, False),  # event ids are partner data: never split on commas
    ({"event_ids": ["e2", "e1"]}, True),
    ({"since": str(NOW)}, True),
    ({"since": str(NOW + 1)}, False),
    ({"until": str(NOW + 1)}, True),
    ({"until": str(NOW)}, False),  # until is exclusive
])
def test_each_criterion(options: dict[str, Any], expected: bool) -> None:
    assert DlqFilter.from_options(now_ms=NOW, **options).matches(HDRS, NOW) is expected


def test_missing_headers_do_not_match_a_criterion_on_them() -> None:
    assert not DlqFilter.from_options(tenants=["acme"], now_ms=NOW).matches({}, NOW)
    assert DlqFilter.from_options(codes=["*"], now_ms=NOW).matches({}, NOW), "a glob * also matches no code"


def test_times_parse_iso_epoch_and_durations() -> None:
    assert parse_time("2026-11-20T10:15:00Z", NOW) == 1_795_169_700_000
    assert parse_time("2026-11-20T10:15:00", NOW) == 1_795_169_700_000  # no zone = UTC
    assert parse_time("2026-11-20T11:15:00+01:00", NOW) == 1_795_169_700_000
    assert parse_time("1795169700000", NOW) == 1_795_169_700_000
    assert parse_time("2h", NOW) == NOW - 7_200_000
    assert parse_time("90m", NOW) == NOW - 5_400_000
    assert parse_time("7d", NOW) == NOW - 7 * 86_400_000
    assert iso_ms(1_795_169_700_000) == "2026-11-20T10:15:00.000Z"
    with pytest.raises(ConfigError, match="ISO-8601"):
        parse_time("yesterday", NOW)
    with pytest.raises(ConfigError, match="--until"):
        DlqFilter.from_options(since="1h", until="2h", now_ms=NOW)


names = st.lists(st.text(alphabet="abcdefgh.*_-", min_size=1, max_size=8), max_size=4)


@given(codes=names, tenants=names, ids=names, since=st.none() | st.integers(0, 2**41))
def test_fingerprint_ignores_order_and_repetition(codes: list[str], tenants: list[str], ids: list[str],
                                                  since: int | None) -> None:
    a = DlqFilter.from_options(codes=codes, tenants=tenants, event_ids=ids,
                               since=str(since) if since is not None else None, now_ms=NOW)
    b = DlqFilter.from_options(codes=list(reversed(codes)) * 2, tenants=sorted(tenants), event_ids=ids[::-1],
                               since=str(since) if since is not None else None, now_ms=NOW + 5)
    assert a == b
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 16


@given(a=names, b=names)
def test_different_filters_have_different_fingerprints(a: list[str], b: list[str]) -> None:
    fa, fb = DlqFilter.from_options(codes=a, now_ms=NOW), DlqFilter.from_options(codes=b, now_ms=NOW)
    assert (fa.fingerprint() == fb.fingerprint()) == (fa == fb)
    # The same values under another criterion are another filter.
    if fa.codes:
        assert fa.fingerprint() != DlqFilter(tenants=fa.codes).fingerprint()


def test_fingerprint_is_stable_across_versions() -> None:
    # The cursor's group name depends on it: changing it silently restarts every replay cursor.
    assert DlqFilter().fingerprint() == DlqFilter.from_options(now_ms=0).fingerprint()
    assert DlqFilter(codes=frozenset({"map.*"})).fingerprint() == "f8781c4342c76f99"


def test_cursor_groups_differ_by_topic_filter_and_destination() -> None:
    f = DlqFilter(codes=frozenset({"map.*"}))
    groups = {cursor_group("a.dlq", f, None), cursor_group("b.dlq", f, None), cursor_group("a.dlq", DlqFilter(), None),
              cursor_group("a.dlq", f, "ingest.a")}
    assert len(groups) == 4
    assert all(g.startswith("router.dlq-replay.") for g in groups)
    assert cursor_group("a.dlq", f, None) == cursor_group("a.dlq", DlqFilter(codes=frozenset({"map.*"})), None)


# ---- redaction ------------------------------------------------------------------------------


def test_fields_setting() -> None:
    assert fields_from_env({}) == DEFAULT_FIELDS
    assert fields_from_env({"ROUTER_REDACT_FIELDS": " "}) == DEFAULT_FIELDS
    assert fields_from_env({"ROUTER_REDACT_FIELDS": "Email, iban,,"}) == {"email", "iban"}


@pytest.mark.parametrize(("key", "sensitive"), [
    ("email", True), ("Email", True), ("requester_email", True), ("requesterEmail", True), ("requester-email", True),
    ("email_verified", False), ("emails", False), ("phone_number", True), ("access_token", True),
    ("Authorization", True), ("title", False), ("myemail", False),
])
def test_sensitive_keys(key: str, sensitive: bool) -> None:
    assert is_sensitive(key, DEFAULT_FIELDS) is sensitive


def test_redacts_nested_json_and_keeps_the_rest() -> None:
    doc = {"event_id": "e1", "data": {"ticket": {"requester": {"email": "ann@example.com", "name": "Ann"},
                                                 "contacts": [{"phone": "+1 555"}, {"phone": None}],
                                                 "auth": {"token": {"nested": "x"}}}}}
    assert redact(doc, DEFAULT_FIELDS) == {"event_id": "e1", "data": {"ticket": {
        "requester": {"email": MASK, "name": "Ann"}, "contacts": [{"phone": MASK}, {"phone": MASK}],
        "auth": {"token": MASK}}}}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["email", "name", "Phone", "requesterEmail", "id", "token", "x"]) | st.text(
        max_size=6), children, max_size=4),
    max_leaves=20,
)


def _sensitive_values(doc: Any) -> list[Any]:
    if isinstance(doc, dict):
        out = [v for k, v in doc.items() if is_sensitive(k, DEFAULT_FIELDS)]
        return out + [x for k, v in doc.items() if not is_sensitive(k, DEFAULT_FIELDS) for x in _sensitive_values(v)]
    if isinstance(doc, list):
        return [x for v in doc for x in _sensitive_values(v)]
    return []


def _strip(doc: Any) -> Any:
    """``doc`` with every sensitive value replaced by the mask: what redact must return."""
    if isinstance(doc, dict):
        return {k: MASK if is_sensitive(k, DEFAULT_FIELDS) else _strip(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_strip(v) for v in doc]
    return doc


@given(json_values)
def test_redaction_masks_every_sensitive_value_and_nothing_else(doc: Any) -> None:
    before = copy.deepcopy(doc)
    out = redact(doc, DEFAULT_FIELDS)
    assert doc == before, "the input is not modified"
    assert all(v == MASK for v in _sensitive_values(out))
    assert out == _strip(doc)
    assert redact(out, DEFAULT_FIELDS) == out, "idempotent"


@given(json_values)
def test_readable_json_round_trips_through_redaction(doc: Any) -> None:
    value = readable(orjson.dumps(doc), DEFAULT_FIELDS)
    assert value.kind == "json"
    assert value.doc == _strip(doc)


def test_non_json_is_escaped_masked_and_truncated() -> None:
    raw = b'{"event_id": "e1", "email": "ann@example.com", "requester_phone": 5551234, oops\x00\xff\n' + b"x" * 600
    value = readable(raw, DEFAULT_FIELDS)
    assert value.kind == "text"
    assert value.size == len(raw)
    assert "ann@example.com" not in value.doc and "5551234" not in value.doc
    assert '"email": "***"' in value.doc and '"requester_phone": ***' in value.doc
    assert "\\x00" in value.doc and "\\xff" in value.doc and "\\n" in value.doc
    assert value.doc.endswith("chars)")
    assert len(value.doc) < 600
    assert readable(None, DEFAULT_FIELDS).short() == "(no value)"


def test_text_masking_handles_unterminated_strings_and_key_value_pairs() -> None:
    assert redact_text('{"password": "hunter2', DEFAULT_FIELDS) == '{"password": "***"'
    assert redact_text("token=abc&user=ann", DEFAULT_FIELDS) == "token=***&user=ann"
    assert redact_text("myemail: x", DEFAULT_FIELDS) == "myemail: x"
    # A mapping error quotes the offending value.
    assert (redact_text("field 'requester_email': 'ann@example.com' (str) does not fit", DEFAULT_FIELDS)
            == "field 'requester_email': \"***\" (str) does not fit")


def test_framed_avro_uses_the_decoder_and_is_redacted() -> None:
    decoded = {"incident_key": "acme:1", "requester_email": "ann@example.com"}
    value = readable(b"\x00\x00\x00\x00\x07rest", DEFAULT_FIELDS, avro=lambda _b: decoded)
    assert value.kind == "avro"
    assert value.doc == {"incident_key": "acme:1", "requester_email": MASK}

    def broken(_b: bytes) -> Any:
        raise ValueError("unknown schema")

    assert readable(b"\x00\x00\x00\x00\x07rest", DEFAULT_FIELDS, avro=broken).kind == "text"


# ---- replayed records -----------------------------------------------------------------------


def _dlq_headers(extra: list[tuple[str, bytes | None]] | None = None) -> list[tuple[str, bytes | None]]:
    return [(h.TENANT, b"acme"), (h.SOURCE, b"zendesk"), (h.EVENT_ID, b"e1"), ("traceparent", b"00-ab-cd-01"),
            (h.ERROR_CODE, b"map.required_missing"), (h.ERROR_MESSAGE, b"title"), (h.ERROR_STAGE, b"map"),
            (h.ORIGINAL_TOPIC, b"ingest.zendesk"), (h.ORIGINAL_PARTITION, b"2"), (h.ORIGINAL_OFFSET, b"41"),
            (h.ORIGINAL_TIMESTAMP, b"1795000000000"), (h.CONSUMER_GROUP, b"router.route"), (h.ATTEMPTS, b"1"),
            (h.FIRST_FAILED_AT, b"1795000000001"), (h.INTEGRATION, b"zd-pd"), *(extra or [])]


def test_replayed_headers_keep_history_drop_the_error_and_count_replays() -> None:
    out = replay_headers(_dlq_headers([(h.HTTP_STATUS, b"400"), (h.RESPONSE_BODY, b"{}")]))
    names = [k for k, _ in out]
    assert names == [h.TENANT, h.SOURCE, h.EVENT_ID, "traceparent", h.ORIGINAL_TOPIC, h.ORIGINAL_PARTITION,
                     h.ORIGINAL_OFFSET, h.ORIGINAL_TIMESTAMP, h.ATTEMPTS, h.FIRST_FAILED_AT, h.INTEGRATION,
                     h.REPLAY_COUNT]
    assert dict(out)[h.REPLAY_COUNT] == b"1"
    assert replay_headers(cast(list[tuple[str, bytes | None]], out))[-1] == (h.REPLAY_COUNT, b"2")


header_names = st.sampled_from(sorted(DROPPED_HEADERS | {h.TENANT, h.EVENT_ID, h.ATTEMPTS, h.REPLAY_COUNT, "x-a"}))


@given(st.lists(st.tuples(header_names, st.none() | st.binary(max_size=5)), max_size=12))
def test_replayed_headers_property(raw: list[tuple[str, bytes | None]]) -> None:
    out = replay_headers(raw)
    assert not any(k in DROPPED_HEADERS for k, _ in out)
    assert [k for k, _ in out].count(h.REPLAY_COUNT) == 1
    kept = [(k, v) for k, v in raw if k not in DROPPED_HEADERS and k != h.REPLAY_COUNT]
    assert out[:-1] == kept, "every other header is kept, in order, byte for byte"
    assert int(out[-1][1] or b"0") >= 1


def test_destination_and_rate() -> None:
    assert destination_of({h.ORIGINAL_TOPIC: "ingest.a"}, None) == "ingest.a"
    assert destination_of({h.ORIGINAL_TOPIC: "ingest.a"}, "ingest.b") == "ingest.b"
    assert destination_of({}, None) is None
    assert parse_rate("20/s") == 20.0
    assert parse_rate("20") == 20.0
    assert parse_rate("600/m") == 10.0
    assert parse_rate("2.5 / s") == 2.5
    for bad in ("0/s", "fast", "-1", "10/h"):
        with pytest.raises(ConfigError, match="--rate"):
            parse_rate(bad)
    assert chunk_size_for(None) == 500
    assert chunk_size_for(20.0) == 20
    assert chunk_size_for(0.5) == 1
    assert chunk_size_for(10_000.0) == 500

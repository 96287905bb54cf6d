"""Dedupe and ordering decisions (``MemoryState``, the reference the Redis store must match) and DLQ headers.

The rules, from ``router.pipeline.state`` and DESIGN §4-5: the first record to claim an event id
routes; a *different* record (other coordinates) with that id is a duplicate; the *same* record
again (a redelivery after a crash) gets the decision it got the first time; a version greater
than the entity's watermark routes, anything else is stale; a record that ends in the DLQ
releases its claim so that a replay goes through.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from router import headers as h
from router.errors import DecodeError, MappingError
from router.pipeline.records import Claim, Decision, Inbound
from router.pipeline.stages import RoutingTable, claim_for, dlq_headers, prepare
from router.pipeline.state import MemoryState
from router.spec.load import load_catalog

ROUTE, DUPLICATE, STALE = Decision.ROUTE, Decision.DUPLICATE, Decision.STALE
DAY_MS = 86_400_000


def claim(event_id: str | None, coords: str, *, version: float | None = None, entity: str = "ticket-1",
          integration: str = "zendesk-to-pd") -> Claim:
    """A claim as ``claim_for`` builds it; ``event_id=None`` is an integration with dedupe disabled."""
    return Claim(
        dedupe_key=f"router:dd:acme:zendesk:{event_id}" if event_id is not None else None,
        field=integration,
        coords=coords,
        dedupe_ttl_ms=DAY_MS,
        order_key=f"router:wm:acme:{integration}:{entity}" if version is not None else None,
        version=version,
        order_ttl_ms=30 * DAY_MS,
    )


def decide(state: MemoryState, *claims: Claim) -> list[Decision]:
    return state.decide(list(claims))


# ---- dedupe -------------------------------------------------------------------------------------


def test_first_claim_routes() -> None:
    assert decide(MemoryState(), claim("e1", "ingest.zendesk:0:10")) == [ROUTE]


def test_a_different_record_with_a_claimed_id_is_a_duplicate() -> None:
    state = MemoryState()
    assert decide(state, claim("e1", "ingest.zendesk:0:10")) == [ROUTE]
    assert decide(state, claim("e1", "ingest.zendesk:0:11")) == [DUPLICATE]
    assert decide(state, claim("e1", "ingest.zendesk:1:10")) == [DUPLICATE]  # same offset, other partition
    assert decide(state, claim("e2", "ingest.zendesk:0:12")) == [ROUTE]


def test_a_duplicate_within_one_batch() -> None:
    state = MemoryState()
    assert decide(state, claim("e1", "t:0:1"), claim("e1", "t:0:2"), claim("e2", "t:0:3")) == [ROUTE, DUPLICATE, ROUTE]


def test_the_same_record_again_gets_its_stored_decision() -> None:
    state = MemoryState()
    first = claim("e1", "t:0:10")
    assert decide(state, first) == [ROUTE]
    assert decide(state, first) == [ROUTE]
    assert decide(state, first, first) == [ROUTE, ROUTE]


def test_a_routed_record_stays_routed_after_a_newer_version_raised_the_watermark() -> None:
    state = MemoryState()
    old = claim("e1", "t:0:10", version=5)
    assert decide(state, old) == [ROUTE]
    assert decide(state, claim("e2", "t:0:11", version=9)) == [ROUTE]
    # The worker crashed before committing offset 10: the redelivery must not be judged stale.
    assert decide(state, old) == [ROUTE]


def test_a_stale_record_stays_stale_when_redelivered() -> None:
    state = MemoryState()
    assert decide(state, claim("e2", "t:0:10", version=9)) == [ROUTE]
    late = claim("e1", "t:0:11", version=5)
    assert decide(state, late) == [STALE]
    assert decide(state, late) == [STALE]


def test_a_duplicate_is_a_duplicate_whatever_its_version() -> None:
    state = MemoryState()
    assert decide(state, claim("e1", "t:0:10", version=5)) == [ROUTE]
    assert decide(state, claim("e1", "t:0:11", version=6)) == [DUPLICATE]
    assert decide(state, claim("e9", "t:0:12", version=6)) == [ROUTE]  # the duplicate did not move the watermark


def test_dedupe_is_per_integration() -> None:
    state = MemoryState()
    to_pd = claim("e1", "t:0:10", integration="zendesk-to-pd")
    to_slack = claim("e1", "t:0:10", integration="zendesk-to-slack")
    assert decide(state, to_pd, to_slack) == [ROUTE, ROUTE]
    assert decide(state, claim("e1", "t:0:11", integration="zendesk-to-slack")) == [DUPLICATE]


def test_without_a_dedupe_key_every_record_routes() -> None:
    state = MemoryState()
    assert decide(state, claim(None, "t:0:1"), claim(None, "t:0:2"), claim(None, "t:0:1")) == [ROUTE] * 3


def test_a_redelivered_record_is_not_stale_by_its_own_watermark_when_dedupe_is_off() -> None:
    """DESIGN §4: a redelivery of the same record after a crash is processed again (ordering on, dedupe off)."""
    state = MemoryState()
    record = claim(None, "t:0:10", version=5)
    assert decide(state, record) == [ROUTE]
    assert decide(state, record) == [ROUTE]


# ---- release ------------------------------------------------------------------------------------


def test_release_lets_a_replay_route() -> None:
    state = MemoryState()
    failed = claim("e1", "ingest.zendesk:0:10")
    assert decide(state, failed) == [ROUTE]
    state.release([failed])
    replay = claim("e1", "ingest.zendesk:0:99")  # the replay is a new record on the source topic
    assert decide(state, replay) == [ROUTE]
    assert decide(state, claim("e1", "ingest.zendesk:0:100")) == [DUPLICATE]  # the replay holds the claim now


def test_release_of_an_ordered_record_lets_its_replay_route() -> None:
    """A routed record that then fails into the DLQ (e.g. the broker refused the output) raised the
    watermark to its own version; its replay must still go through (DESIGN §4)."""
    state = MemoryState()
    failed = claim("e1", "ingest.zendesk:0:10", version=5)
    assert decide(state, failed) == [ROUTE]
    state.release([failed])
    assert decide(state, claim("e1", "ingest.zendesk:0:99", version=5)) == [ROUTE]


def test_release_by_another_record_does_not_free_the_claim() -> None:
    state = MemoryState()
    assert decide(state, claim("e1", "t:0:10")) == [ROUTE]
    state.release([claim("e1", "t:0:11")])  # a duplicate that went to the DLQ holds nothing
    assert decide(state, claim("e1", "t:0:12")) == [DUPLICATE]
    state.release([claim(None, "t:0:13"), claim("never-claimed", "t:0:14")])  # no-ops


def test_release_of_a_stale_record_lets_its_replay_be_judged_again() -> None:
    state = MemoryState()
    assert decide(state, claim("e2", "t:0:10", version=9)) == [ROUTE]
    late = claim("e1", "t:0:11", version=5)
    assert decide(state, late) == [STALE]
    state.release([late])  # on_stale: dlq
    assert decide(state, claim("e1", "t:0:50", version=5)) == [STALE]  # still older than the watermark
    assert decide(state, claim("e1", "t:0:51", version=5)) == [DUPLICATE]


# ---- ordering -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "expected"), [(8, ROUTE), (7.5, ROUTE), (7, STALE), (6.99, STALE), (-1, STALE)])
def test_versions_greater_route_equal_or_lower_are_stale(version: float, expected: Decision) -> None:
    state = MemoryState()
    assert decide(state, claim("first", "t:0:1", version=7)) == [ROUTE]
    assert decide(state, claim("second", "t:0:2", version=version)) == [expected]


def test_a_routed_version_raises_the_watermark_a_stale_one_does_not() -> None:
    state = MemoryState()
    got = decide(state, claim("a", "t:0:1", version=1), claim("b", "t:0:2", version=3),
                 claim("c", "t:0:3", version=2), claim("d", "t:0:4", version=4))
    assert got == [ROUTE, ROUTE, STALE, ROUTE]
    assert state.watermarks == {"router:wm:acme:zendesk-to-pd:ticket-1": (4, "t:0:4")}  # (version, setter)


def test_watermarks_are_per_entity_and_per_integration() -> None:
    state = MemoryState()
    assert decide(state, claim("a", "t:0:1", version=9, entity="ticket-1")) == [ROUTE]
    assert decide(state, claim("b", "t:0:2", version=1, entity="ticket-2")) == [ROUTE]
    assert decide(state, claim("c", "t:0:3", version=1, entity="ticket-1", integration="other")) == [ROUTE]
    assert decide(state, claim("d", "t:0:4", version=1, entity="ticket-1")) == [STALE]


# ---- claim_for ----------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_claim_for_names_tenant_source_event_and_integration() -> None:
    catalog = load_catalog(ROOT / "integrations", ROOT / "schemas" / "avro")
    integration = catalog.by_name("zendesk-escalations-to-pagerduty")
    table = RoutingTable.build(catalog.integrations, {integration.name: 7})
    event = {"event_id": "evt-1", "type": "ticket.escalated", "sequence": 3, "occurred_at": 1763633700,
             "data": {"ticket": {"id": 4521, "title": "Down"}}}
    record = Inbound("ingest.zendesk", 2, 40, 1_700_000_000_000, None, orjson.dumps(event), [(h.TENANT, b"globex")])
    (candidate,) = prepare(record, table).candidates
    got = claim_for(candidate, record.coords, "router:")
    assert got == Claim(
        dedupe_key="router:dk:globex:zendesk:evt-1",
        field="zendesk-escalations-to-pagerduty",
        coords="ingest.zendesk:2:40",
        dedupe_ttl_ms=DAY_MS,
        order_key="router:wm:globex:zendesk-escalations-to-pagerduty:4521",
        version=3.0,
        order_ttl_ms=30 * DAY_MS,
    )


# ---- DLQ headers --------------------------------------------------------------------------------

NOW = 1_763_000_000_000
ORIGINAL = [(h.TENANT, b"acme"), (h.SOURCE, b"zendesk"), ("traceparent", b"00-abc-def-01"), ("x-partner", None)]


def as_dict(headers: list[tuple[str, bytes | None]]) -> dict[str, str | None]:
    names = [k for k, _ in headers]
    assert len(names) == len(set(names)), f"a header is repeated: {names}"
    return {k: v.decode() if v is not None else None for k, v in headers}


def test_dlq_headers_keep_the_original_headers_and_add_the_error_headers() -> None:
    record = Inbound("ingest.zendesk", 3, 1234, 1_700_000_000_000, b"k", b"{}", list(ORIGINAL))
    error = MappingError("field 'title': required value is missing", code="map.required_missing")
    out = dlq_headers(record, error, group="route-zendesk", integration="zendesk-to-pd", now_ms=NOW)
    assert out[: len(ORIGINAL)] == ORIGINAL  # untouched, in order, first
    assert as_dict(out[len(ORIGINAL):]) == {
        h.ERROR_CODE: "map.required_missing",
        h.ERROR_MESSAGE: "field 'title': required value is missing",
        h.ERROR_STAGE: "map",
        h.ORIGINAL_TOPIC: "ingest.zendesk",
        h.ORIGINAL_PARTITION: "3",
        h.ORIGINAL_OFFSET: "1234",
        h.ORIGINAL_TIMESTAMP: "1700000000000",
        h.CONSUMER_GROUP: "route-zendesk",
        h.ATTEMPTS: "1",
        h.FIRST_FAILED_AT: str(NOW),
        h.INTEGRATION: "zendesk-to-pd",
    }


def test_a_second_failure_increments_attempts_and_keeps_the_first_failure_time() -> None:
    first = Inbound("ingest.zendesk", 3, 1234, 1_700_000_000_000, b"k", b"{}", list(ORIGINAL))
    once = dlq_headers(first, DecodeError("invalid JSON"), group="g", integration=None, now_ms=NOW)
    # The DLQ record is replayed onto the source topic and fails again.
    replayed = Inbound("ingest.zendesk", 0, 77, 1_700_000_500_000, b"k", b"{}", [*once, (h.REPLAY_COUNT, b"1")])
    twice = dlq_headers(replayed, MappingError("boom", code="map.type_error"), group="g", integration="pd",
                        now_ms=NOW + 60_000)
    got = as_dict(twice)
    assert got[h.ATTEMPTS] == "2"
    assert got[h.FIRST_FAILED_AT] == str(NOW)
    assert (got[h.ERROR_CODE], got[h.ERROR_STAGE], got[h.ERROR_MESSAGE]) == ("map.type_error", "map", "boom")
    assert (got[h.ORIGINAL_TOPIC], got[h.ORIGINAL_PARTITION], got[h.ORIGINAL_OFFSET]) == ("ingest.zendesk", "0", "77")
    assert got[h.REPLAY_COUNT] == "1"
    for name, value in ORIGINAL:
        assert got[name] == (value.decode() if value is not None else None)
    third = dlq_headers(Inbound("ingest.zendesk", 0, 78, 0, None, b"{}", twice), DecodeError("x"), group="g",
                        integration=None, now_ms=NOW + 120_000)
    assert as_dict(third)[h.ATTEMPTS] == "3"


def test_dlq_error_message_is_truncated() -> None:
    record = Inbound("ingest.zendesk", 0, 1, 0, None, b"x", [])
    out = as_dict(dlq_headers(record, DecodeError("x" * 5000), group="g", integration=None, now_ms=NOW))
    assert out[h.ERROR_MESSAGE] == "x" * 1000
    assert out[h.ERROR_CODE] == "decode.invalid_json"
    assert h.INTEGRATION not in out

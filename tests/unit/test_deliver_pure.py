"""Delivery worker's pure parts: the status table, Retry-After, backoff, lanes and commit prefix."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.deliver.lanes import Item, Lanes, PartitionTrack
from consumers.deliver.payload import batch_body, idempotency_key, to_json
from consumers.deliver.status import Verdict, backoff_s, classify_status, interpret, parse_retry_after


@pytest.mark.parametrize(("status", "verdict"), [
    (200, Verdict.DELIVERED), (201, Verdict.DELIVERED), (204, Verdict.DELIVERED),
    (401, Verdict.UNAUTHORIZED),
    (408, Verdict.RETRY), (429, Verdict.RETRY), (500, Verdict.RETRY), (502, Verdict.RETRY), (503, Verdict.RETRY),
    (501, Verdict.TERMINAL), (400, Verdict.TERMINAL), (403, Verdict.TERMINAL), (404, Verdict.TERMINAL),
    (422, Verdict.TERMINAL), (301, Verdict.TERMINAL),
])
def test_status_table(status: int, verdict: Verdict) -> None:
    assert classify_status(status) is verdict


def test_retry_after_delta_seconds_and_http_date() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("7", now) == 7.0
    when = format_datetime(datetime.fromtimestamp(now + 30, tz=UTC), usegmt=True)
    assert parse_retry_after(when, now) == pytest.approx(30.0, abs=1.0)
    past = format_datetime(datetime.fromtimestamp(now - 30, tz=UTC), usegmt=True)
    assert parse_retry_after(past, now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


@given(st.text(max_size=40))
def test_retry_after_never_raises(value: str) -> None:
    result = parse_retry_after(value, 1_800_000_000.0)
    assert result is None or result >= 0


def test_multi_status_gives_each_record_its_status() -> None:
    body = orjson.dumps({"results": [{"index": 1, "status": 400}, {"index": 0, "status": 200},
                                     {"index": 2, "status": 503}]})
    answer = interpret(207, {}, body, 3, 0.0)
    assert answer.verdict is Verdict.PARTIAL
    assert answer.per_record == (200, 400, 503)


@pytest.mark.parametrize("body", [b"not json", b'{"results": [{"index": 0, "status": 200}]}', b'{"results": 3}'])
def test_unreadable_or_incomplete_multi_status_retries_everything(body: bytes) -> None:
    assert interpret(207, {}, body, 2, 0.0).verdict is Verdict.RETRY


def test_backoff_is_full_jitter_under_the_cap() -> None:
    rng = random.Random(1)
    samples = [backoff_s(attempt, 0.5, 10.0, rng) for attempt in range(1, 20) for _ in range(20)]
    assert all(0 <= s <= 10.0 for s in samples)
    assert max(samples) > 5.0 and min(samples) < 0.5, "jitter spreads over [0, ceiling]"
    assert all(backoff_s(1, 0.5, 10.0, random.Random(i)) <= 1.0 for i in range(50))


def test_idempotency_key_is_stable_and_distinct() -> None:
    assert idempotency_key("acme", "i", "e1") == idempotency_key("acme", "i", "e1")
    assert len({idempotency_key("acme", "i", "e1"), idempotency_key("acme", "j", "e1"),
                idempotency_key("globex", "i", "e1"), idempotency_key("acme", "i", "e2")}) == 4


def test_json_body_keeps_decimals_exact_and_times_utc() -> None:
    import decimal

    out = orjson.loads(to_json({"mrr": decimal.Decimal("49.90"), "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}))
    assert out == {"mrr": "49.90", "at": "2026-01-02T03:04:05.000Z"}
    batch = orjson.loads(batch_body([{"a": 1}, {"a": 2}], ["k1", "k2"], "records", "idempotency_key"))
    assert batch == {"records": [{"a": 1, "idempotency_key": "k1"}, {"a": 2, "idempotency_key": "k2"}]}


def _item(offset: int, key: bytes | None, partition: int = 0, integration: str = "i") -> Item:
    return Item("delivery.x", partition, offset, key, b"", [], integration, "acme", f"e{offset}", f"k{offset}", {}, 0.0)


def test_commit_moves_only_over_the_contiguous_finished_prefix() -> None:
    track = PartitionTrack()
    for offset in (10, 11, 12, 13):
        track.add(offset)
    track.finish(11)
    track.finish(13)
    assert track.advance() is None, "10 is not finished: nothing may be committed"
    track.finish(10)
    assert track.advance() == 12
    track.finish(12)
    assert track.advance() == 14


def test_a_waiting_head_holds_its_key_but_not_others() -> None:
    lanes = Lanes()
    a1, a2, b1 = _item(1, b"A"), _item(2, b"A"), _item(3, b"B")
    for item in (a1, a2, b1):
        lanes.add(item)
    assert lanes.ready(0.0) == [a1, b1]
    a1.not_before = 100.0  # waiting for a retry
    assert lanes.ready(0.0) == [b1], "A's later record waits behind its retrying head; B flows"
    lanes.finish(b1)
    assert lanes.commit_positions() == {}, "offset 1 is unfinished, so 3 cannot be committed"
    lanes.finish(a1)
    assert lanes.ready(0.0) == [a2]
    assert lanes.commit_positions() == {("delivery.x", 0): 2}


def test_records_without_a_key_do_not_wait_for_each_other() -> None:
    lanes = Lanes()
    x, y = _item(1, None), _item(2, None)
    lanes.add(x)
    lanes.add(y)
    x.in_flight = True
    assert lanes.ready(0.0) == [y]


def test_paused_integrations_are_held_and_dead_letters_still_flow() -> None:
    lanes = Lanes()
    held, dead = _item(1, b"A", integration="paused"), _item(2, b"B", integration="paused")
    dead.dlq = ("deliver.decode", "bad", None, b"")
    lanes.add(held)
    lanes.add(dead)
    assert lanes.ready(0.0, active={"other"}) == [dead]


def test_revoked_partitions_are_forgotten() -> None:
    lanes = Lanes()
    lanes.add(_item(1, b"A", partition=0))
    lanes.add(_item(2, b"B", partition=1))
    lanes.drop_partitions({("delivery.x", 0)})
    assert [i.partition for i in lanes.ready(0.0)] == [1]
    assert set(lanes.tracks) == {("delivery.x", 1)}


def test_batches_respect_max_records_and_max_bytes() -> None:
    from consumers.deliver.lanes import batches

    items = [_item(i, bytes([i])) for i in range(7)]
    for item, size in zip(items, [10, 10, 10, 50, 10, 200, 10], strict=True):
        item.json = b"x" * size
    assert [[i.offset for i in b] for b in batches(items, 3, 1000)] == [[0, 1, 2], [3, 4, 5], [6]]
    # Sizes as sent: the records, a comma between two, and the envelope (here 10 bytes).
    assert [[i.offset for i in b] for b in batches(items, 10, 62, 10)] == [[0, 1, 2], [3], [4], [5], [6]]
    assert [[i.offset for i in b] for b in batches(items, 10, 82)] == [[0, 1, 2], [3, 4], [5], [6]]
    assert batches([], 5, 100) == []


_values = st.text(max_size=40) | st.integers(-(2**63), 2**63 - 1)


@given(st.lists(st.dictionaries(st.sampled_from("abcdef"), _values, max_size=5), max_size=40), st.integers(1, 20),
       st.integers(20, 600))
def test_every_batch_body_is_within_max_bytes_unless_it_holds_one_record(
        records: list[dict[str, object]], max_records: int, max_bytes: int) -> None:
    from consumers.deliver.lanes import batches
    from consumers.deliver.payload import envelope, join_body, record_json

    items = []
    for offset, record in enumerate(records):
        item = _item(offset, None)
        item.json = record_json(record, item.idempotency_key, "idempotency_key")
        items.append(item)
    head, tail = envelope("records")
    out = batches(items, max_records, max_bytes, len(head) + len(tail))
    assert [i for b in out for i in b] == items, "every record once, in order"
    for batch in out:
        body = join_body([i.json for i in batch], "records")
        assert len(batch) <= max_records
        assert len(body) <= max_bytes or len(batch) == 1, (len(body), len(batch))
        assert body == batch_body([records[i.offset] for i in batch], [i.idempotency_key for i in batch], "records",
                                  "idempotency_key")


def test_delivered_key_calls_made_while_one_is_in_flight_go_together_each_getting_its_own() -> None:
    import asyncio

    from consumers.deliver.delivered import _Combined

    calls: list[list[str]] = []

    async def run(keys: list[str]) -> list[str]:
        calls.append(keys)
        await asyncio.sleep(0)  # in flight: the other callers queue meanwhile
        if "bad" in keys:
            raise ConnectionError("down")
        return [k.upper() for k in keys]

    async def scenario() -> None:
        combined = _Combined(run)
        first = await asyncio.gather(combined(["a"]), combined(["b", "c"]), combined(["d"]))
        assert first == [["A"], ["B", "C"], ["D"]]
        assert calls == [["a", "b", "c", "d"]], "one call for the three"
        failed = await asyncio.gather(combined(["x"]), combined(["bad"]), return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in failed), "every caller of a failed call sees its error"
        assert await combined(["e"]) == ["E"], "a failure does not stop later calls"

    asyncio.run(scenario())

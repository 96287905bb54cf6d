"""The indexed lanes (consumers.deliver.lanes) against the scanning version they replaced.

Random sequences of what the worker does — add records, ask what is ready, start, release, retry
(with a dead letter or not), finish, drop revoked partitions, commit — run against both; after each
step the ready sets, the sizes and the commit positions must agree.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.deliver.lanes import TP, Item, Lanes, PartitionTrack

TOPIC = "delivery.x"


class ScanningLanes:
    """The reference: every held record scanned on each call (the implementation before the index)."""

    def __init__(self) -> None:
        self.lanes: OrderedDict[tuple[str, int, str, bytes | int], deque[Item]] = OrderedDict()
        self.tracks: dict[TP, PartitionTrack] = {}

    def add(self, item: Item) -> None:
        self.lanes.setdefault(item.lane, deque()).append(item)
        self.tracks.setdefault(item.tp, PartitionTrack()).add(item.offset)

    def ready(self, now: float, active: set[str] | None = None) -> list[Item]:
        out = []
        for lane in self.lanes.values():
            head = lane[0]
            if head.in_flight or head.not_before > now:
                continue
            if active is not None and head.integration not in active and head.dlq is None:
                continue
            out.append(head)
        return out

    def start(self, item: Item) -> None:
        item.in_flight = True

    def release(self, item: Item) -> None:
        item.in_flight = False

    def retry(self, item: Item, not_before: float) -> None:
        item.not_before, item.in_flight = not_before, False

    def finish(self, item: Item) -> None:
        item.in_flight = False
        lane = self.lanes.get(item.lane)
        if lane and lane[0] is item:
            lane.popleft()
            if not lane:
                del self.lanes[item.lane]
        track = self.tracks.get(item.tp)
        if track is not None:
            track.finish(item.offset)

    def commit_positions(self, only: set[TP] | None = None) -> dict[TP, int]:
        out = {}
        for tp, track in self.tracks.items():
            if only is None or tp in only:
                moved = track.advance()
                if moved is not None:
                    out[tp] = moved
        return out

    def drop_partitions(self, tps: set[TP]) -> None:
        for lane_id in [lid for lid in self.lanes if (lid[0], lid[1]) in tps]:
            del self.lanes[lane_id]
        for tp in tps:
            self.tracks.pop(tp, None)

    def size(self) -> int:
        return sum(len(lane) for lane in self.lanes.values())


DEAD = ("deliver.decode", "bad", None, b"")
OPS = ["add", "add", "add", "ready", "ready", "start", "release", "retry", "retry_dead", "finish", "finish",
       "drop", "commit", "tick"]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_indexed_lanes_agree_with_the_scanning_reference(data: st.DataObject) -> None:
    indexed, reference = Lanes(), ScanningLanes()
    offsets = {0: 0, 1: 0}
    now = 100.0
    taken: list[Item] = []  # started and not yet back: what the worker holds in its tasks
    last_ready: list[Item] = []
    for _ in range(data.draw(st.integers(1, 80))):
        op = data.draw(st.sampled_from(OPS))
        if op == "add":
            partition = data.draw(st.integers(0, 1))
            offset = offsets[partition]
            offsets[partition] += 1
            key = data.draw(st.sampled_from([b"A", b"B", b"C", None]))
            item = Item(TOPIC, partition, offset, key, b"", [], data.draw(st.sampled_from(["i", "j"])), "acme",
                        f"e{offset}", f"k{partition}-{offset}", {}, 0.0)
            if data.draw(st.integers(0, 9)) == 0:
                item.dlq = DEAD
            indexed.add(item)
            reference.add(item)
        elif op == "ready":
            active = data.draw(st.sampled_from([None, {"i"}, {"j"}, set(), {"i", "j"}]))
            got, want = indexed.ready(now, active), reference.ready(now, active)
            assert set(map(id, got)) == set(map(id, want))
            assert len(got) == len(want), "a head is returned once"
            last_ready = got
        elif op == "start":
            startable = [i for i in last_ready if not i.in_flight]
            if startable:
                for item in data.draw(st.lists(st.sampled_from(startable), min_size=1, unique_by=id)):
                    indexed.start(item)
                    reference.start(item)
                    taken.append(item)
        elif op in ("release", "retry", "retry_dead", "finish") and taken:
            item = taken.pop(data.draw(st.integers(0, len(taken) - 1)))
            if op == "release":
                indexed.release(item)
                reference.release(item)
            elif op == "finish":
                indexed.finish(item)
                reference.finish(item)
            else:
                if op == "retry_dead":
                    item.dlq = DEAD  # set while in flight, as the worker does
                at = now + (0.0 if op == "retry_dead" else data.draw(st.sampled_from([0.0, 0.5, 1.0, 5.0])))
                indexed.retry(item, at)
                reference.retry(item, at)
        elif op == "drop":
            tps = {(TOPIC, p) for p in data.draw(st.sets(st.integers(0, 1), min_size=1))}
            indexed.drop_partitions(tps)
            reference.drop_partitions(tps)
        elif op == "commit":
            only = data.draw(st.sampled_from([None, {(TOPIC, 0)}, {(TOPIC, 1)}]))
            assert indexed.commit_positions(only) == reference.commit_positions(only)
        elif op == "tick":
            now += data.draw(st.sampled_from([0.1, 0.5, 1.0, 3.0]))
        assert indexed.size() == reference.size()
        assert set(indexed.tracks) == set(reference.tracks)
        assert {tp: t.backlog() for tp, t in indexed.tracks.items()} == \
               {tp: t.backlog() for tp, t in reference.tracks.items()}
    for active in (None, {"i"}, set()):
        assert set(map(id, indexed.ready(now + 10, active))) == set(map(id, reference.ready(now + 10, active)))
    assert indexed.commit_positions() == reference.commit_positions()


def test_ready_costs_what_is_ready_not_what_is_held() -> None:
    """Heads of a paused integration and heads waiting for a retry are not looked at per pass."""
    lanes = Lanes()
    paused = [Item(TOPIC, 0, o, f"p{o}".encode(), b"", [], "paused", "acme", "e", "k", {}, 0.0) for o in range(1000)]
    for item in paused:
        lanes.add(item)
    waiting = Item(TOPIC, 0, 1000, b"w", b"", [], "live", "acme", "e", "k", {}, 0.0)
    lanes.add(waiting)
    assert lanes.ready(0.0, {"live"}) == [waiting]
    lanes.start(waiting)
    lanes.retry(waiting, 50.0)
    looked_at = 0
    original = Lanes._collect

    def counting(self: Lanes, bucket: dict[Item, None], now: float, out: list[Item]) -> None:
        nonlocal looked_at
        looked_at += len(bucket)
        original(self, bucket, now, out)

    Lanes._collect = counting  # type: ignore[method-assign]
    try:
        assert lanes.ready(1.0, {"live"}) == []
        assert lanes.ready(60.0, {"live"}) == [waiting]
    finally:
        Lanes._collect = original  # type: ignore[method-assign]
    assert looked_at == 1, "only the one head that came due was looked at"
    assert lanes.size() == 1001

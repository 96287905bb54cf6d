"""Per-key order without head-of-line blocking, and what may be committed (pure bookkeeping).

Records of one key form a *lane*: only a lane's head may be in flight or waiting for a retry;
later records of that key wait behind it while other lanes keep flowing. Each partition tracks
its offsets in consumption order, and only the contiguous prefix of finished records is
committed, so a crash never skips a record that was still waiting.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

TP = tuple[str, int]


@dataclass(eq=False)
class Item:
    """One record of a delivery topic on its way to the partner."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    integration: str
    tenant: str
    event_id: str
    idempotency_key: str
    record: Any  # the decoded Avro record (JSON-ready after payload.to_json)
    born_s: float  # epoch seconds the record was written to the delivery topic: max_age counts from here
    attempts: int = 0
    not_before: float = 0.0  # monotonic time before which it must not be sent
    in_flight: bool = False
    dlq: tuple[str, str, int | None, bytes] | None = None  # (code, message, http status, body) waiting to be written
    refreshed_auth: bool = False
    traceparent: str | None = None  # from the headers, decoded once
    received_at_ms: int | None = None  # router-received-at (gateway), for end-to-end latency

    @property
    def tp(self) -> TP:
        return (self.topic, self.partition)

    @property
    def lane(self) -> tuple[str, int, bytes | int]:
        # A record without a key has no order to keep: it is a lane of its own.
        return (self.topic, self.partition, self.key if self.key is not None else self.offset)


@dataclass
class PartitionTrack:
    """Offsets of one partition in order; which are finished; the next offset to commit."""

    pending: deque[int] = field(default_factory=deque)
    finished: set[int] = field(default_factory=set)
    committed: int | None = None  # last offset+1 handed to commit

    def add(self, offset: int) -> None:
        self.pending.append(offset)

    def finish(self, offset: int) -> None:
        self.finished.add(offset)

    def advance(self) -> int | None:
        """The new commit position (last finished contiguous offset + 1), or None if it did not move."""
        moved = None
        while self.pending and self.pending[0] in self.finished:
            offset = self.pending.popleft()
            self.finished.discard(offset)
            moved = offset + 1
        if moved is not None:
            self.committed = moved
        return moved

    def backlog(self) -> int:
        return len(self.pending)


class Lanes:
    """Every waiting record, by lane, plus each partition's commit track."""

    def __init__(self) -> None:
        self.lanes: OrderedDict[tuple[str, int, bytes | int], deque[Item]] = OrderedDict()
        self.tracks: dict[TP, PartitionTrack] = {}

    def add(self, item: Item) -> None:
        self.lanes.setdefault(item.lane, deque()).append(item)
        self.tracks.setdefault(item.tp, PartitionTrack()).add(item.offset)

    def ready(self, now: float, active: set[str] | None = None) -> list[Item]:
        """Lane heads that may be sent now (not in flight, not waiting, integration active)."""
        out = []
        for lane in self.lanes.values():
            head = lane[0]
            if head.in_flight or head.not_before > now:
                continue
            if active is not None and head.integration not in active and head.dlq is None:
                continue
            out.append(head)
        return out

    def finish(self, item: Item) -> None:
        """``item`` is delivered, skipped or dead-lettered: free its lane and mark its offset."""
        lane = self.lanes.get(item.lane)
        if lane and lane[0] is item:
            lane.popleft()
            if not lane:
                del self.lanes[item.lane]
        track = self.tracks.get(item.tp)
        if track is not None:
            track.finish(item.offset)

    def commit_positions(self, only: set[TP] | None = None) -> dict[TP, int]:
        """Partitions whose commit point moved, with the offset to commit."""
        out = {}
        for tp, track in self.tracks.items():
            if only is not None and tp not in only:
                continue
            moved = track.advance()
            if moved is not None:
                out[tp] = moved
        return out

    def drop_partitions(self, tps: set[TP]) -> None:
        """Forget revoked partitions: their uncommitted records are redone by the new owner."""
        for lane_id in [lid for lid in self.lanes if (lid[0], lid[1]) in tps]:
            del self.lanes[lane_id]
        for tp in tps:
            self.tracks.pop(tp, None)

    def backlog(self, tp: TP) -> int:
        track = self.tracks.get(tp)
        return track.backlog() if track else 0

    def size(self) -> int:
        return sum(len(lane) for lane in self.lanes.values())


def batches(items: list[Item], max_records: int, max_bytes: int) -> list[list[Item]]:
    """Requests for ``items``: at most ``max_records`` each and, by the records' encoded size, about
    ``max_bytes`` (a record larger than ``max_bytes`` still goes, alone)."""
    out: list[list[Item]] = []
    batch: list[Item] = []
    size = 0
    for item in items:
        weight = len(item.value or b"")
        if batch and (len(batch) >= max(1, max_records) or size + weight > max_bytes):
            out.append(batch)
            batch, size = [], 0
        batch.append(item)
        size += weight
    if batch:
        out.append(batch)
    return out


def now() -> float:
    return time.monotonic()

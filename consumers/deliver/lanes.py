"""Per-key order without head-of-line blocking, and what may be committed (pure bookkeeping).

Records of one key form a *lane*: only a lane's head may be in flight or waiting for a retry;
later records of that key wait behind it while other lanes keep flowing. Each partition tracks
its offsets in consumption order, and only the contiguous prefix of finished records is
committed, so a crash never skips a record that was still waiting.

Lane heads are indexed by what they wait for, so that choosing what to send costs O(ready)
(plus O(log n) per head whose retry time comes), never a scan of every record held: a worker
holds up to ``max_backlog`` records per partition, and looks for ready heads on every pass.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

TP = tuple[str, int]
LaneId = tuple[str, int, str, bytes | int]  # (topic, partition, tenant, key or offset)
HEAP_SLACK = 1024  # stale heap entries tolerated before the heap is rebuilt without them


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
    json: bytes = b""  # the record as it goes in a request body (payload.record_json, or to_json alone), made once
    delivered_key: str = ""  # its key in Redis once the partner accepted it (delivered.py)
    undecoded: bool = False  # its schema could not be fetched for a passing reason (registry down): decoded later
    scope: str = ""  # what holds it: its integration, or ``integration/tenant`` with connections (tenancy.py)

    @property
    def tp(self) -> TP:
        return (self.topic, self.partition)

    @property
    def lane(self) -> LaneId:
        # Order is per (tenant, entity) (DESIGN §5): two tenants' records of the same entity key
        # never wait on each other, so one tenant's held connection holds nobody else. A record
        # without a key has no order to keep: it is a lane of its own.
        return (self.topic, self.partition, self.tenant, self.key if self.key is not None else self.offset)


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
    """Every held record, by lane, plus each partition's commit track.

    Each lane head that is not in flight is indexed in exactly one place:

    - a *ready bucket*: its scope's (``_ready``: the integration, or ``integration/tenant`` for an
      integration that delivers with each tenant's connection), or ``_dead`` when it carries a dead letter
      (dead letters are written whatever the integration's state);
    - ``_waiting``, a heap by ``not_before``: it moves to its bucket when that time comes.

    A head in flight is in neither: it comes back through ``retry`` or ``release``, or leaves
    through ``finish``, which indexes the next record of its lane. So every change of
    ``in_flight`` and ``not_before`` goes through ``start``, ``retry``, ``release`` and ``finish``
    (the worker never sets them itself), and ``dlq`` is set before ``add`` or while the head is
    in flight. ``ready`` still checks each head it returns, so that a head marked in flight by
    hand is dropped from its bucket and one whose ``not_before`` was moved later goes to the
    heap; a head *released* by hand would be lost to the index: use ``release``.
    """

    def __init__(self) -> None:
        self.lanes: dict[LaneId, deque[Item]] = {}
        self.tracks: dict[TP, PartitionTrack] = {}
        self._held = 0
        self._ready: dict[str, dict[Item, None]] = {}  # insertion-ordered sets, one per scope
        self._dead: dict[Item, None] = {}
        self._bucket_of: dict[Item, dict[Item, None]] = {}
        self._waiting: list[tuple[float, int, Item]] = []  # (not_before, token, head); stale entries skipped
        self._token_of: dict[Item, int] = {}  # heads in the heap -> the token of their live entry
        self._tokens = 0
        self._now = 0.0  # the latest time ``ready`` was asked about: heads due by then need no heap

    # ---- records in and out -------------------------------------------------------------------

    def add(self, item: Item) -> None:
        """Hold ``item`` behind the records of its key; it is indexed at once if it heads its lane."""
        lane_id = item.lane
        lane = self.lanes.get(lane_id)
        if lane is None:
            self.lanes[lane_id] = deque((item,))
            if not item.in_flight:
                self._index(item)
        else:
            lane.append(item)
        self._held += 1
        track = self.tracks.get(item.tp)
        if track is None:
            track = self.tracks[item.tp] = PartitionTrack()
        track.add(item.offset)

    def ready(self, now: float, active: set[str] | None = None) -> list[Item]:
        """Lane heads that may be sent now (not in flight, not waiting, scope in ``active``), and
        heads carrying a dead letter whatever their scope. Costs O(ready + heads turned
        in flight since the last call), plus O(log n) per head whose ``not_before`` came.

        Heads of inactive scopes stay in their bucket, unseen, until it is active again."""
        self._now = now
        waiting = self._waiting
        while waiting and waiting[0][0] <= now:
            _, token, item = heapq.heappop(waiting)
            if self._token_of.get(item) == token:
                del self._token_of[item]
                self._bucket(item)
        out: list[Item] = []
        self._collect(self._dead, now, out)
        for name, bucket in self._ready.items():
            if bucket and (active is None or name in active):
                self._collect(bucket, now, out)
        return out

    def scopes(self) -> set[str]:
        """Scopes with lane heads waiting in their bucket."""
        return {name for name, bucket in self._ready.items() if bucket}

    def start(self, item: Item) -> None:
        """``item`` (a ready head) goes into a request or a DLQ write."""
        item.in_flight = True
        self._unindex(item)

    def retry(self, item: Item, not_before: float) -> None:
        """``item`` is back from an attempt and may go again from ``not_before`` (monotonic)."""
        item.not_before = not_before
        self.release(item)

    def release(self, item: Item) -> None:
        """``item`` is back, unsent or not finished: it heads its lane again (if it still has one)."""
        item.in_flight = False
        lane = self.lanes.get(item.lane)
        if lane is not None and lane[0] is item:
            self._unindex(item)
            self._index(item)

    def finish(self, item: Item) -> None:
        """``item`` is delivered, skipped or dead-lettered: free its lane and mark its offset."""
        item.in_flight = False
        lane_id = item.lane
        lane = self.lanes.get(lane_id)
        if lane and lane[0] is item:
            lane.popleft()
            self._held -= 1
            self._unindex(item)
            if lane:
                if not lane[0].in_flight:
                    self._index(lane[0])
            else:
                del self.lanes[lane_id]
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

    def skip(self, item: Item) -> None:
        """``item`` is not this worker's to send (another group delivers it): it is never held,
        only counted finished in its partition's commit track."""
        track = self.tracks.get(item.tp)
        if track is None:
            track = self.tracks[item.tp] = PartitionTrack()
        track.add(item.offset)
        track.finish(item.offset)

    def drop_partitions(self, tps: set[TP]) -> None:
        """Forget revoked partitions: their uncommitted records are redone by the new owner."""
        # A scan of the lanes, not of the records: rebalances are rare, the loop's passes are not.
        for lane_id in [lid for lid in self.lanes if (lid[0], lid[1]) in tps]:
            lane = self.lanes.pop(lane_id)
            self._held -= len(lane)
            self._unindex(lane[0])
        for tp in tps:
            self.tracks.pop(tp, None)

    def backlog(self, tp: TP) -> int:
        track = self.tracks.get(tp)
        return track.backlog() if track else 0

    def size(self) -> int:
        """Records held (waiting, ready or in flight), in O(1)."""
        return self._held

    # ---- the index ----------------------------------------------------------------------------

    def _index(self, head: Item) -> None:
        if head.not_before <= self._now:
            self._bucket(head)
            return
        self._tokens += 1
        self._token_of[head] = self._tokens
        heapq.heappush(self._waiting, (head.not_before, self._tokens, head))
        if len(self._waiting) > 2 * len(self._token_of) + HEAP_SLACK:
            self._waiting = [e for e in self._waiting if self._token_of.get(e[2]) == e[1]]
            heapq.heapify(self._waiting)

    def _bucket(self, head: Item) -> None:
        if head.dlq is not None:
            bucket = self._dead
        elif (found := self._ready.get(head.scope or head.integration)) is not None:
            bucket = found
        else:
            bucket = self._ready[head.scope or head.integration] = {}
        bucket[head] = None
        self._bucket_of[head] = bucket

    def _unindex(self, head: Item) -> None:
        bucket = self._bucket_of.pop(head, None)
        if bucket is not None:
            del bucket[head]
        else:
            self._token_of.pop(head, None)  # its heap entry is now stale

    def _collect(self, bucket: dict[Item, None], now: float, out: list[Item]) -> None:
        moved: list[Item] | None = None
        for item in bucket:
            if item.in_flight or item.not_before > now:
                if moved is None:
                    moved = []
                moved.append(item)
            else:
                out.append(item)
        if moved:
            for item in moved:
                del bucket[item]
                del self._bucket_of[item]
                if not item.in_flight:
                    self._index(item)


def batches(items: list[Item], max_records: int, max_bytes: int, envelope_bytes: int = 0) -> list[list[Item]]:
    """Requests for ``items``: at most ``max_records`` each, and bodies of at most ``max_bytes`` as
    sent — ``envelope_bytes`` (what surrounds the records, ``payload.envelope``) plus each record's
    ``json`` and a comma between two (``payload.join_body``). A record whose body alone is larger
    than ``max_bytes`` still goes, alone."""
    out: list[list[Item]] = []
    batch: list[Item] = []
    size = 0
    limit = max(1, max_records)
    for item in items:
        weight = len(item.json)
        if batch and (len(batch) >= limit or size + 1 + weight > max_bytes):
            out.append(batch)
            batch = []
        size = size + 1 + weight if batch else envelope_bytes + weight
        batch.append(item)
    if batch:
        out.append(batch)
    return out


def now() -> float:
    return time.monotonic()

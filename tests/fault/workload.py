"""The fault test's workload, built from a seed: entities with versions in order, exact re-sends,
stale versions and poison. Pure: no sockets, so it can be read and checked on its own."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

import orjson

Kind = Literal["normal", "stale", "poison"]
KINDS: tuple[Kind, ...] = ("normal", "stale", "poison")

# Poison that passes the gateway (signed, JSON, event id, entity key) but that the route worker
# must dead-letter at the map stage, with the code each one must carry.
POISON_CODES = {"no-title": "map.required_missing", "bad-time": "map.type_error"}
# Dense enough that a route worker killed mid-run often has poison in its uncommitted batch.
POISON_RATE = 0.03


@dataclass(frozen=True)
class Event:
    """One webhook the partner sends: its event id, entity, version and what must become of it."""

    event_id: str
    entity: int
    sequence: int
    kind: Kind
    body: bytes
    poison: str = ""  # a POISON_CODES key for poison events

    def describe(self) -> str:
        extra = f", {self.poison}" if self.poison else ""
        return f"{self.event_id} (entity {self.entity}, seq {self.sequence}, {self.kind}{extra})"


@dataclass(frozen=True)
class Post:
    """One POST to the gateway, in the partner's order; ``resend`` repeats an earlier one byte for byte."""

    event: Event
    resend: bool = False


@dataclass
class Workload:
    posts: list[Post] = field(default_factory=list)
    events: dict[str, Event] = field(default_factory=dict)

    def of_kind(self, kind: Kind) -> list[Event]:
        return [e for e in self.events.values() if e.kind == kind]

    def summary(self) -> str:
        counts = {k: len(self.of_kind(k)) for k in KINDS}
        resends = sum(p.resend for p in self.posts)
        entities = len({e.entity for e in self.events.values()})
        return (f"{len(self.posts)} posts: {counts['normal']} to deliver, {counts['stale']} stale, "
                f"{counts['poison']} poison, {resends} exact re-sends, over {entities} entities")


def _body(event_id: str, entity: int, sequence: int, poison: str = "") -> bytes:
    ticket: dict[str, object] = {"id": entity, "priority": "high"}
    if poison != "no-title":
        ticket["title"] = event_id  # the partner sees the event id: the ledger names each event
    occurred = "not a time" if poison == "bad-time" else "2026-11-20T10:15:00Z"
    return orjson.dumps({"event_id": event_id, "type": "ticket.escalated", "sequence": sequence,
                         "occurred_at": occurred, "data": {"ticket": {**ticket}}})


class _Entity:
    """One entity's stream, produced one post at a time."""

    def __init__(self, rng: random.Random, entity: int, workload: Workload) -> None:
        self.rng = rng
        self.entity = entity
        self.workload = workload
        self.left = rng.randint(1, 7)  # versions still to send
        self.sequence = 0
        self.delivered_max = 0  # the highest version the router will take (poison does not count)
        self.sent: list[Event] = []
        self.stales = 0

    def next_post(self) -> Post:
        rng = self.rng
        if self.sent and rng.random() < 0.03:
            return Post(rng.choice(self.sent), resend=True)
        if self.delivered_max >= 2 and rng.random() < 0.04:
            # An older version after a newer one: a new event id, a version below the watermark.
            self.stales += 1
            seq = rng.randint(1, self.delivered_max - 1)
            return self._new(f"e{self.entity}.{seq}s{self.stales}", seq, "stale")
        self.left -= 1
        self.sequence += rng.choice((1, 1, 1, 2))
        if rng.random() < POISON_RATE:
            poison = rng.choice(sorted(POISON_CODES))
            return self._new(f"e{self.entity}.{self.sequence}p", self.sequence, "poison", poison)
        self.delivered_max = self.sequence
        return self._new(f"e{self.entity}.{self.sequence}", self.sequence, "normal")

    def _new(self, event_id: str, sequence: int, kind: Kind, poison: str = "") -> Post:
        event = Event(event_id, self.entity, sequence, kind, _body(event_id, self.entity, sequence, poison), poison)
        self.workload.events[event_id] = event
        self.sent.append(event)
        return Post(event)


def build_workload(seed: int, n_events: int, active: int = 40) -> Workload:
    """About ``n_events`` posts; ``active`` entities interleaved at a time, each in its own order."""
    rng = random.Random(seed)
    workload = Workload()
    streams: list[_Entity] = []
    next_entity = 1
    while len(workload.posts) < n_events:
        while len(streams) < active:
            streams.append(_Entity(rng, next_entity, workload))
            next_entity += 1
        stream = rng.choice(streams)
        workload.posts.append(stream.next_post())
        if stream.left == 0:
            streams.remove(stream)
    return workload

"""The benchmark's input: partner-webhook-shaped Zendesk escalations, and what should come out.

Pure: no sockets. ``generate`` returns the records to produce (key, value, headers) in produce
order and the set of event ids the route workers must deliver under ``on_stale: drop``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson

Record = tuple[bytes, bytes, list[tuple[str, bytes]]]

TENANTS = ("acme", "globex", "initech", "umbrella")
PRIORITIES = ("low", "med", "high", "urgent")
TAGS = ("checkout", "billing", "login", "api", "mobile", "p1", "p2", "eu", "us", "vip", "sla")
WORDS = ("customer", "reports", "that", "the", "checkout", "page", "fails", "with", "error", "after",
         "payment", "since", "this", "morning", "several", "users", "in", "region", "cannot", "log",
         "retry", "does", "not", "help", "escalating", "to", "on-call", "please", "investigate", "urgently")
_PROSE = " ".join(random.Random(0).choices(WORDS, k=4000))  # descriptions are slices of it
FIRST_TICKET = 100_000
EPOCH = datetime(2026, 11, 20, 10, 15)  # naive UTC; formatted with a "Z"


@dataclass
class Workload:
    """Records in produce order, the ids that must be delivered, and how the input was made."""

    records: list[Record]
    expected_ids: set[str]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def mean_value_bytes(self) -> float:
        return sum(len(v) for _, v, _ in self.records) / max(1, len(self.records))


def tenant_of(ticket: int) -> str:
    """Each ticket belongs to one tenant, so an entity is (tenant, ticket) = ticket."""
    return TENANTS[ticket % len(TENANTS)]


def event_body(event_id: str, ticket: int, sequence: int, n: int, rng: random.Random, size: int) -> bytes:
    """A Zendesk-like ``ticket.escalated`` webhook, padded with a description to about ``size`` bytes."""
    ticket_data = {
        "id": ticket,
        "title": f"Escalation: {rng.choice(WORDS)} {rng.choice(WORDS)} on ticket {ticket}",
        "priority": rng.choice(PRIORITIES),
        "requester": {"email": f"user{ticket % 9973}@{tenant_of(ticket)}.example"},
        "tags": rng.sample(TAGS, rng.randint(0, 3)),
        "description": "",
    }
    event = {
        "event_id": event_id,
        "type": "ticket.escalated",
        "sequence": sequence,
        "occurred_at": (EPOCH + timedelta(seconds=n)).isoformat() + "Z",
        "data": {"ticket": ticket_data},
    }
    room = size - len(orjson.dumps(event))
    if room > 0:
        start = rng.randrange(len(_PROSE) - room)
        ticket_data["description"] = _PROSE[start:start + room]
    return orjson.dumps(event)


def expected_delivered(events: Iterable[tuple[str, int, int]]) -> set[str]:
    """Event ids a correct router delivers, given (event_id, entity, sequence) in produce order.

    An id is delivered the first time it is seen if its sequence is strictly greater than every
    earlier sequence of its entity (``on_stale: drop``); a repeated id is a duplicate.
    """
    seen: set[str] = set()
    latest: dict[int, int] = {}
    delivered: set[str] = set()
    for event_id, entity, sequence in events:
        if event_id in seen:
            continue
        seen.add(event_id)
        if sequence > latest.get(entity, -1):
            latest[entity] = sequence
            delivered.add(event_id)
    return delivered


def generate(n: int, *, entities: int = 100_000, duplicate_rate: float = 0.05, stale_rate: float = 0.02,
             size: int = 500, seed: int = 1) -> Workload:
    """``n`` records: new events, exact re-sends of earlier ones, and stale versions.

    A re-send repeats an earlier record byte for byte (same event id: a duplicate). A stale
    event has a new id and a sequence below its entity's latest sequence sent so far.
    """
    rng = random.Random(seed)
    records: list[Record] = []
    meta: list[tuple[str, int, int]] = []
    originals: list[int] = []  # indexes of records that are not re-sends
    latest: dict[int, int] = {}
    sent_entities: list[int] = []
    counts = {"new": 0, "resent": 0, "stale": 0}
    for i in range(n):
        roll = rng.random()
        if roll < duplicate_rate and originals:
            j = originals[rng.randrange(len(originals))]
            records.append(records[j])
            meta.append(meta[j])
            counts["resent"] += 1
            continue
        if roll < duplicate_rate + stale_rate and sent_entities:
            ticket = sent_entities[rng.randrange(len(sent_entities))]
            sequence = rng.randrange(0, latest[ticket])  # sequences start at 1, so 0 is always stale
            counts["stale"] += 1
        else:
            ticket = FIRST_TICKET + rng.randrange(entities)
            if ticket not in latest:
                sent_entities.append(ticket)
            sequence = latest.get(ticket, 0) + rng.randint(1, 3)
            latest[ticket] = sequence
            counts["new"] += 1
        event_id = f"evt-{i:08d}"
        value = event_body(event_id, ticket, sequence, i, rng, size)
        records.append((str(ticket).encode(), value, [("router-tenant", tenant_of(ticket).encode())]))
        meta.append((event_id, ticket, sequence))
        originals.append(i)
    expected = expected_delivered(meta)
    counts["entities"] = len(sent_entities)
    counts["expected"] = len(expected)
    return Workload(records, expected, counts)

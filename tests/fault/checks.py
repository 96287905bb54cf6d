"""The fault test's invariants, over plain data read back from the partner's ledger and the topics.

Each check returns problem lines that name what was missing or doubled, with counts and a few
examples; an empty list means the invariant held.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from consumers.deliver.payload import idempotency_key
from tests.fault.workload import POISON_CODES, Kind, Workload

EXAMPLES = 5
NEVER_DELIVERED: tuple[Kind, ...] = ("stale", "poison")


@dataclass(frozen=True)
class IngestRecord:
    """A record of ``ingest.<source>``: where it is and which event it carries."""

    partition: int
    offset: int
    event_id: str


@dataclass(frozen=True)
class DeadLetter:
    """A DLQ record, by the coordinates of the record it stands for."""

    partition: int
    offset: int
    event_id: str
    code: str


def _examples(items: Iterable[str]) -> str:
    items = list(items)
    more = f", … (+{len(items) - EXAMPLES})" if len(items) > EXAMPLES else ""
    return ", ".join(items[:EXAMPLES]) + more


def check_ledger(workload: Workload, records: Sequence[dict[str, Any]], tenant: str, integration: str) -> list[str]:
    """Every normal event accepted exactly once, nothing stale or poison, per-entity order kept."""
    problems: list[str] = []
    expected = {e.event_id for e in workload.of_kind("normal")}
    by_key = {idempotency_key(tenant, integration, eid): eid for eid in workload.events}
    seen: Counter[str] = Counter()
    unknown: list[str] = []
    wrong_key: list[str] = []
    order: dict[int, list[int]] = defaultdict(list)
    for entry in records:
        record = entry.get("record") or {}
        eid = str(record.get("title") or by_key.get(str(entry.get("idempotency_key")), ""))
        event = workload.events.get(eid)
        if event is None:
            unknown.append(f"{entry.get('idempotency_key')}: {str(record)[:80]}")
            continue
        seen[eid] += 1
        if entry.get("idempotency_key") != idempotency_key(tenant, integration, eid):
            wrong_key.append(f"{eid} under key {entry.get('idempotency_key')}")
        if event.kind == "normal":
            order[event.entity].append(event.sequence)
    missing = sorted(expected - set(seen), key=lambda e: (workload.events[e].entity, workload.events[e].sequence))
    if missing:
        problems.append(f"missing at the partner: {len(missing)} of {len(expected)} expected events, e.g. "
                        + _examples(workload.events[e].describe() for e in missing))
    doubled = sorted(e for e, n in seen.items() if n > 1)
    if doubled:
        problems.append(f"accepted more than once by the partner: {len(doubled)} events, e.g. "
                        + _examples(f"{workload.events[e].describe()} x{seen[e]}" for e in doubled))
    for kind in NEVER_DELIVERED:
        bad = sorted(e for e in seen if workload.events[e].kind == kind)
        if bad:
            total = len(workload.of_kind(kind))
            problems.append(f"{kind} events reached the partner: {len(bad)} of {total}, e.g. "
                            + _examples(workload.events[e].describe() for e in bad))
    if unknown:
        problems.append(f"records the test never sent reached the partner: {len(unknown)}, e.g. {_examples(unknown)}")
    if wrong_key:
        problems.append(f"accepted under an unexpected idempotency key: {len(wrong_key)}, e.g. {_examples(wrong_key)}")
    out_of_order = {entity: seqs for entity, seqs in order.items() if any(a >= b for a, b in itertools.pairwise(seqs))}
    if out_of_order:
        problems.append(f"per-entity order broken at the partner: {len(out_of_order)} entities, e.g. "
                        + _examples(f"entity {k}: versions accepted in order {v}" for k, v in out_of_order.items()))
    return problems


def check_ingest(workload: Workload, ingest: Sequence[IngestRecord]) -> list[str]:
    """Every event the gateway answered 202 for is in the ingest topic (a 202 means the broker has it)."""
    present = {r.event_id for r in ingest}
    absent = sorted(set(workload.events) - present)
    if absent:
        return [f"answered 202 by the gateway but not in the ingest topic: {len(absent)} events, e.g. "
                + _examples(workload.events[e].describe() for e in absent)]
    return []


def check_dead_letters(workload: Workload, ingest: Sequence[IngestRecord], dead: Sequence[DeadLetter]) -> list[str]:
    """Exactly one DLQ record, with its code, per poison record of the ingest topic; no other."""
    problems: list[str] = []
    poison = {(r.partition, r.offset): workload.events[r.event_id] for r in ingest
              if r.event_id in workload.events and workload.events[r.event_id].kind == "poison"}
    by_coord: dict[tuple[int, int], list[DeadLetter]] = defaultdict(list)
    for d in dead:
        by_coord[(d.partition, d.offset)].append(d)

    def at(coord: tuple[int, int]) -> str:
        return f"{poison[coord].describe()} at [{coord[0]}]@{coord[1]}"

    missing = sorted(c for c in poison if c not in by_coord)
    if missing:
        problems.append(f"poison records without a DLQ record: {len(missing)} of {len(poison)}, e.g. "
                        + _examples(at(c) for c in missing))
    doubled = sorted(c for c in poison if len(by_coord.get(c, [])) > 1)
    if doubled:
        problems.append(f"poison records dead-lettered more than once: {len(doubled)} of {len(poison)} "
                        f"({sum(len(by_coord[c]) - 1 for c in doubled)} extra DLQ records), e.g. "
                        + _examples(f"{at(c)} x{len(by_coord[c])}" for c in doubled))
    wrong = sorted(c for c in poison if any(d.code != POISON_CODES[poison[c].poison] for d in by_coord.get(c, [])))
    if wrong:
        problems.append(f"poison records dead-lettered with the wrong code: {len(wrong)}, e.g. " + _examples(
            f"{at(c)}: {sorted({d.code for d in by_coord[c]})} (expected {POISON_CODES[poison[c].poison]})"
            for c in wrong))
    others = sorted(c for c in by_coord if c not in poison)
    if others:
        problems.append(f"DLQ records for records that are not poison: {len(others)}, e.g. " + _examples(
            f"{by_coord[c][0].event_id} at [{c[0]}]@{c[1]} code {by_coord[c][0].code}" for c in others))
    return problems


def check_delivery_dlq(codes: Sequence[tuple[str, str]]) -> list[str]:
    """No record dead-lettered at delivery: 503 and 429 are retried, nothing else fails."""
    if not codes:
        return []
    by_code = Counter(code for _eid, code in codes)
    return [f"delivery DLQ holds {len(codes)} records ({dict(by_code)}), e.g. "
            + _examples(f"{eid} {code}" for eid, code in codes)]

"""Dedupe and ordering decisions (DESIGN §4, §5), and an in-memory store for certification.

Semantics, shared by this in-memory store and the Redis/Lua store of the route worker
(tests/integration/test_state_parity.py holds them to the same answers):

* Dedupe is per (tenant, source, event id) and integration. The first record to claim it
  stores its coordinates (topic:partition:offset), the decision it got and, if it raised the
  entity's watermark, the watermark before it. A record arriving again *with the same
  coordinates* is a redelivery after a crash: it gets its stored decision again (so a record
  that advanced a watermark is not judged stale by its own watermark). A *different* record
  with a claimed id is a duplicate.
* Ordering keeps one watermark per (tenant, integration, entity): the highest version seen and
  the coordinates of the record that set it. A greater version routes and raises it; a record
  whose own coordinates set the watermark routes again (a redelivery, even with dedupe off);
  anything else is stale.
* A record that ends in the DLQ releases its claim (``release``), so a replay goes through;
  if it had raised the watermark and nothing has raised it since, the watermark goes back to
  what it was, so the replay of the same version is not judged stale.
* A record's dead-lettering is recorded once its DLQ write is acknowledged
  (``record_dead_letters``, slots from ``router.deadletters``); a redelivery of it finds it there
  (``dead_lettered``) and is not written again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from router.deadletters import Slot
from router.pipeline.records import Claim, Decision


class StateStore(Protocol):
    """Answers every claim of a batch in one call, in order.

    The route worker calls ``decide`` (and ``release`` for stale records) from its ``route-state``
    thread and ``release`` for broker-refused records from ``route-io``: a store shared by a
    worker must be safe to call from two threads (RedisState is: redis-py pools connections).
    """

    def decide(self, claims: Sequence[Claim]) -> list[Decision]: ...

    def release(self, claims: Sequence[Claim]) -> None: ...

    def dead_lettered(self, slots: Sequence[Slot]) -> list[bool]: ...

    def record_dead_letters(self, slots: Sequence[Slot], codes: Sequence[str]) -> None: ...


@dataclass
class _Held:
    decision: Decision
    previous_mark: float | None
    coords: str


class MemoryState:
    """The reference implementation: dicts, no TTLs (used by `router spec test` and parity tests)."""

    def __init__(self) -> None:
        self.claims: dict[tuple[str, str], _Held] = {}
        self.watermarks: dict[str, tuple[float, str]] = {}
        self.dead_letters: dict[Slot, str] = {}

    def dead_lettered(self, slots: Sequence[Slot]) -> list[bool]:
        return [s in self.dead_letters for s in slots]

    def record_dead_letters(self, slots: Sequence[Slot], codes: Sequence[str]) -> None:
        self.dead_letters.update(zip(slots, codes, strict=True))

    def decide(self, claims: Sequence[Claim]) -> list[Decision]:
        return [self._one(c) for c in claims]

    def _one(self, claim: Claim) -> Decision:
        slot = (claim.dedupe_key, claim.field) if claim.dedupe_key else None
        if slot is not None and slot in self.claims:
            held = self.claims[slot]
            return held.decision if held.coords == claim.coords else Decision.DUPLICATE
        decision = Decision.ROUTE
        previous: float | None = None
        if claim.order_key is not None and claim.version is not None:
            mark = self.watermarks.get(claim.order_key)
            if mark is not None and mark[1] == claim.coords:
                pass  # this very record set the watermark: a redelivery
            elif mark is not None and claim.version <= mark[0]:
                decision = Decision.STALE
            else:
                previous = mark[0] if mark is not None else None
                self.watermarks[claim.order_key] = (claim.version, claim.coords)
        if slot is not None:
            self.claims[slot] = _Held(decision, previous, claim.coords)
        return decision

    def release(self, claims: Sequence[Claim]) -> None:
        for claim in claims:
            slot = (claim.dedupe_key, claim.field) if claim.dedupe_key else None
            held = self.claims.get(slot) if slot is not None else None
            if held is None or held.coords != claim.coords:
                continue
            del self.claims[slot]  # type: ignore[arg-type]
            if claim.order_key is not None and held.decision is Decision.ROUTE:
                mark = self.watermarks.get(claim.order_key)
                if mark is not None and mark[1] == claim.coords:
                    if held.previous_mark is None:
                        del self.watermarks[claim.order_key]
                    else:
                        self.watermarks[claim.order_key] = (held.previous_mark, "")

"""Dedupe and ordering decisions (DESIGN §4, §5), and an in-memory store for certification.

Semantics, shared by this in-memory store and the Redis/Lua store of the route worker:

* Dedupe is per (tenant, source, event id) and integration. The first record to claim it
  stores its coordinates (topic:partition:offset) and the decision it got. A record arriving
  again *with the same coordinates* is a redelivery after a crash: it gets its stored decision
  again (so a record that advanced a watermark is not judged stale by its own watermark).
  A *different* record with a claimed id is a duplicate.
* Ordering keeps one watermark per (tenant, integration, entity): a version greater than the
  watermark routes and raises it; anything else is stale.
* A record that ends in the DLQ releases its claim (``release``), so a replay goes through.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from router.pipeline.records import Claim, Decision


class StateStore(Protocol):
    """Answers every claim of a batch in one call, in order."""

    def decide(self, claims: Sequence[Claim]) -> list[Decision]: ...

    def release(self, claims: Sequence[Claim]) -> None: ...


class MemoryState:
    """The reference implementation: a dict, no TTLs (used by `router spec test` and parity tests)."""

    def __init__(self) -> None:
        self.claims: dict[tuple[str, str], str] = {}
        self.watermarks: dict[str, float] = {}

    def decide(self, claims: Sequence[Claim]) -> list[Decision]:
        return [self._one(c) for c in claims]

    def _one(self, claim: Claim) -> Decision:
        slot = (claim.dedupe_key, claim.field) if claim.dedupe_key else None
        if slot is not None and slot in self.claims:
            coords, _, stored = self.claims[slot].rpartition("|")
            return Decision(stored) if coords == claim.coords else Decision.DUPLICATE
        decision = Decision.ROUTE
        if claim.order_key is not None and claim.version is not None:
            mark = self.watermarks.get(claim.order_key)
            if mark is not None and claim.version <= mark:
                decision = Decision.STALE
            else:
                self.watermarks[claim.order_key] = claim.version
        if slot is not None:
            self.claims[slot] = f"{claim.coords}|{decision.value}"
        return decision

    def release(self, claims: Sequence[Claim]) -> None:
        for claim in claims:
            slot = (claim.dedupe_key, claim.field) if claim.dedupe_key else None
            if slot is not None and self.claims.get(slot, "").rpartition("|")[0] == claim.coords:
                del self.claims[slot]

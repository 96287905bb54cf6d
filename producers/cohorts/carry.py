"""Carry-over: ids whose records ended in a DLQ, read so that the next sync sends them again.

Two DLQs can hold an audience's records: ``cohort.<audience>.dlq`` (the route worker could not map
a change; the value is the original `CohortMembershipChange`) and ``delivery.<destination>.dlq``
(the partner refused the import; the value is the route worker's output, e.g. a cohort import with
``cohort_changes[]``). Both are read from a cursor: the committed offsets of the consumer group
``router.cohort-carry.<audience>.<destination>``, used with ``assign`` (no group membership, which
the embedded broker forms slowly). The cursor is committed only after the new state is, so a run
that dies re-reads the same DLQ records next time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from producers.cohorts.errors import CohortError
from producers.cohorts.members import Members
from producers.cohorts.records import audience_of, changes_in
from router import codec, codes
from router import headers as h
from router.kafka import consumer_config, dlq_topic
from router.settings import Settings

log = logging.getLogger("router.cohort")
QUIET_S = 0.5


def carry_group(audience: str, destination: str | None) -> str:
    """The consumer group whose committed offsets are the carry-over cursor."""
    return f"router.cohort-carry.{audience}.{destination or '*'}"


@dataclass
class Carried:
    """Ids from DLQ records of this audience and destination, and how far the DLQs were read."""

    failed_adds: Members
    failed_removes: Members
    records: int = 0
    unreadable: int = 0
    positions: list[TopicPartition] = field(default_factory=list)


@dataclass
class _Collected:
    adds: list[str] = field(default_factory=list)
    removes: list[str] = field(default_factory=list)
    records: int = 0
    unreadable: int = 0


class CarryReader:
    """Reads the DLQs once per run (:meth:`read`) and commits the cursor with the state (:meth:`commit`)."""

    def __init__(self, settings: Settings, registry: SchemaRegistryClient, audience: str,
                 destination: str | None) -> None:
        self.audience = audience
        self.destination = destination
        self.registry = registry
        self.schemas = codec.Codec(codec.registry_fetch(registry))
        self.consumer = Consumer(consumer_config(settings, carry_group(audience, destination),
                                                 **{"enable.partition.eof": False}))

    def topics(self) -> list[str]:
        """The DLQs that exist: the cohort topic's, and the destination's (every destination's without one)."""
        existing = set(self.consumer.list_topics(timeout=10).topics)
        wanted = {dlq_topic(f"cohort.{self.audience}")}
        if self.destination:
            wanted.add(dlq_topic(f"delivery.{self.destination}"))
        else:
            wanted |= {t for t in existing if t.startswith("delivery.") and t.endswith(".dlq")}
        return sorted(wanted & existing)

    def read(self, deadline_s: float = 120.0) -> Carried:
        """Read every DLQ from the cursor to its end.

        The embedded broker reports as high watermark the base offset of the last batch, not the
        log end, so "the end" is: every partition at or past its reported high watermark, and then
        a consume that returns nothing for 0.5 s.
        """
        metadata = self.consumer.list_topics(timeout=10).topics
        tps = [TopicPartition(t, p) for t in self.topics() for p in sorted(metadata[t].partitions)]
        if not tps:
            return Carried(Members.empty(), Members.empty())
        committed = self.consumer.committed(tps, timeout=10)
        start = {(tp.topic, tp.partition): tp.offset if tp.offset >= 0 else OFFSET_BEGINNING for tp in committed}
        high: dict[tuple[str, int], int] = {}
        position: dict[tuple[str, int], int] = {}
        for tp in tps:
            low, hi = self.consumer.get_watermark_offsets(tp, timeout=10)
            key = (tp.topic, tp.partition)
            high[key] = hi
            position[key] = start[key] if start[key] >= 0 else low
        self.consumer.assign([TopicPartition(t, p, start[(t, p)]) for t, p in start])
        found = _Collected()
        end = time.monotonic() + deadline_s
        quiet_since: float | None = None
        while True:
            messages = self.consumer.consume(500, 0.1)
            now = time.monotonic()
            quiet_since = None if messages else (quiet_since or now)
            for msg in messages:
                if msg.error() is not None:
                    continue
                position[(msg.topic() or "", msg.partition() or 0)] = (msg.offset() or 0) + 1
                self._collect(msg, found)
            caught_up = all(position[k] >= high[k] for k in high)
            if caught_up and quiet_since is not None and now - quiet_since >= QUIET_S:
                break
            if now > end:
                raise CohortError(f"could not read the DLQs {sorted({t for t, _ in high})} to their end within "
                                  f"{deadline_s:.0f}s", code=codes.COHORT_CARRY_TIMEOUT)
        positions = [TopicPartition(t, p, o) for (t, p), o in sorted(position.items()) if o >= 0]
        return Carried(Members.from_ids(found.adds), Members.from_ids(found.removes), found.records,
                       found.unreadable, positions)

    def _collect(self, msg: Message, found: _Collected) -> None:
        hdrs = h.to_dict(msg.headers())  # type: ignore[arg-type]
        if audience_of(hdrs.get(h.EVENT_ID, "")) != self.audience:
            return
        record = self._decode(msg.value())
        if record is None:
            found.unreadable += 1
            return
        is_change = "change_id" in record
        if is_change and record.get("destination") != self.destination:
            return  # another destination's sync of the same audience
        found.records += 1
        for ids, remove in changes_in(record):
            (found.removes if remove else found.adds).extend(ids)

    def _decode(self, value: bytes | None) -> dict[str, Any] | None:
        if codec.schema_id_of(value) is None:
            return None
        try:
            record = self.schemas.decode_fetching(value)
        except ValueError as exc:  # unknown id, registry down, corrupt bytes: count it, never guess
            log.warning("a DLQ record could not be decoded: %s", exc)
            return None
        return record if isinstance(record, dict) else None

    def commit(self, positions: list[TopicPartition]) -> None:
        """Move the cursor past what this run read (after the state was committed)."""
        if positions:
            try:
                self.consumer.commit(offsets=positions, asynchronous=False)
            except KafkaException as exc:  # the next run re-reads: the ids are sent once more, harmlessly
                log.warning("the carry-over cursor was not committed: %s", exc)

    def close(self) -> None:
        self.consumer.close()

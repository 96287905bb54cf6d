"""What the page reads from Kafka: DLQ depth per integration and consumer lag, cached for a few seconds.

DLQ depth counts the records of ``<source topic>.dlq`` and ``delivery.<destination>.dlq`` whose
``router-integration`` header names the integration. A DLQ only grows (replay moves a cursor, it
deletes nothing), so each refresh reads only what arrived since the last one; when retention
moves a partition's start the topic is counted again from scratch.

Consumer lag is, per group and partition, the high watermark minus the group's committed offset,
read with ``Consumer.committed`` under the group's id, without joining the group. On the
embedded broker (Tansu) the reported high watermark is the base offset of the last batch, not
the log end, so the lag shown may be slightly under the truth (never over).

All Kafka calls are blocking: they run on one dedicated thread, at most one refresh at a time.
A request waits for a refresh at most ``wait_s`` and otherwise gets the previous snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from confluent_kafka import Consumer, TopicPartition
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from router import headers as h
from router.dlq.read import METADATA_TIMEOUT_S, TP, open_reader, read_to_end, watermarks
from router.kafka import consumer_config, dlq_topic
from router.settings import Settings
from router.spec.load import Catalog
from router.spec.model import Integration

log = logging.getLogger("router.admin")

IDLE_LIMIT_S = 3.0  # a DLQ read that sees nothing for this long has reached the end


@dataclass(frozen=True)
class DlqDepth:
    """One integration's records in its DLQ topics."""

    depth: int = 0
    by_code: Mapping[str, int] = field(default_factory=dict)
    by_topic: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PartitionLag:
    """One group's position on one partition."""

    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group has committed nothing there
    high: int  # as reported by the broker (see the module docstring)
    low: int

    @property
    def lag(self) -> int:
        """Records after the committed offset (all retained records when nothing is committed)."""
        start = self.low if self.committed is None else max(self.committed, self.low)
        return max(0, self.high - start)


@dataclass(frozen=True)
class KafkaSnapshot:
    """Everything read from Kafka in one refresh; ``taken_ms`` 0 = nothing read yet."""

    taken_ms: int = 0
    dlq_counts: Mapping[tuple[str, str, str], int] = field(default_factory=dict)  # (topic, integration, code)
    lag: tuple[PartitionLag, ...] = ()
    error: str | None = None  # why the last refresh failed (the numbers are then the previous ones)

    def dlq_of(self, integration: str) -> DlqDepth:
        """The integration's DLQ depth, by code and by topic."""
        by_code: Counter[str] = Counter()
        by_topic: Counter[str] = Counter()
        for (topic, name, code), n in self.dlq_counts.items():
            if name == integration:
                by_code[code] += n
                by_topic[topic] += n
        return DlqDepth(sum(by_code.values()), dict(by_code.most_common()), dict(sorted(by_topic.items())))

    def lag_of(self, group: str, topic: str) -> list[PartitionLag]:
        """The group's partitions of ``topic``, by partition."""
        return sorted((p for p in self.lag if p.group == group and p.topic == topic), key=lambda p: p.partition)

    def dlq_by_topic(self) -> dict[tuple[str, str], int]:
        """(topic, integration) → records, for the ``router_dlq_depth`` gauge."""
        out: Counter[tuple[str, str]] = Counter()
        for (topic, integration, _code), n in self.dlq_counts.items():
            out[(topic, integration)] += n
        return dict(out)


def dlq_topics_of(integration: Integration) -> list[str]:
    """The DLQ topics that can hold the integration's records: its source's and its destination's."""
    return [dlq_topic(integration.source.topic), dlq_topic(integration.destination.topic)]


class DlqCounter:
    """Counts DLQ records by (topic, integration, code), reading only what arrived since the last count."""

    def __init__(self) -> None:
        self.position: dict[TP, int] = {}
        self.low: dict[TP, int] = {}
        self.counts: dict[str, Counter[tuple[str, str]]] = {}

    def update(self, consumer: Consumer, partitions: Mapping[str, list[int]]) -> None:
        """Read every partition of ``partitions`` (topic → partition ids) from the last position to its end."""
        topics = sorted(partitions)
        if not topics:
            return
        marks = watermarks(consumer, [(t, p) for t in topics for p in partitions[t]])
        for topic in topics:
            moved = any(marks[(topic, p)][0] > self.low.get((topic, p), 0) for p in partitions[topic])
            if topic not in self.counts or moved:  # first sight, or retention dropped counted records
                self.counts[topic] = Counter()
                for p in partitions[topic]:
                    self.position[(topic, p)] = marks[(topic, p)][0]
            for p in partitions[topic]:
                self.low[(topic, p)] = marks[(topic, p)][0]
        start = {tp: o for tp, o in self.position.items() if tp[0] in partitions}
        try:
            for record in read_to_end(consumer, topics, start=start, idle_limit_s=IDLE_LIMIT_S):
                headers = record.headers
                self.counts[record.topic][(headers.get(h.INTEGRATION, ""), headers.get(h.ERROR_CODE, "") or "-")] += 1
                self.position[record.tp] = record.offset + 1
        finally:
            # An assigned consumer keeps long-polling; on Tansu every later request of this client
            # would queue behind those fetches (up to fetch.wait.max.ms each).
            consumer.unassign()

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        return {(topic, integration, code): n for topic, counts in self.counts.items()
                for (integration, code), n in counts.items()}


class KafkaProbe:
    """DLQ depth and consumer lag of a catalog's integrations, refreshed on demand at most every ``ttl_s``."""

    def __init__(self, settings: Settings, catalog: Catalog, *, route_group: str, deliver_group: str,
                 ttl_s: float = 5.0, wait_s: float = 3.0) -> None:
        self.settings = settings
        self.catalog = catalog
        self.route_group = route_group
        self.deliver_group = deliver_group
        self.ttl_s = ttl_s
        self.wait_s = wait_s
        self.latest = KafkaSnapshot()
        self._fetched_at = 0.0  # monotonic time of the last refresh (0: refresh on the next request)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="admin-kafka")
        self._refreshing: asyncio.Future[KafkaSnapshot] | None = None
        self._counter = DlqCounter()
        self._reader: Consumer | None = None
        self._group_readers: dict[str, Consumer] = {}
        _PROBES.add(self)

    @property
    def groups(self) -> dict[str, list[str]]:
        """Consumer group → the topics it consumes."""
        return {self.route_group: self.catalog.source_topics(), self.deliver_group: self.catalog.delivery_topics()}

    # ---- asyncio side -----------------------------------------------------------------------

    async def current(self) -> KafkaSnapshot:
        """The latest snapshot, refreshed first when older than ``ttl_s`` (waiting at most ``wait_s``)."""
        if self.latest.taken_ms and time.monotonic() - self._fetched_at < self.ttl_s:
            return self.latest
        if self._refreshing is None or self._refreshing.done():
            loop = asyncio.get_running_loop()
            self._refreshing = loop.run_in_executor(self._executor, self._refresh)
            self._refreshing.add_done_callback(self._store)
        # On timeout the refresh goes on; this request shows the previous numbers.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._refreshing), self.wait_s)
        return self.latest

    def invalidate(self) -> None:
        """Make the next request read Kafka again (after an action that changes what it shows)."""
        self._fetched_at = 0.0

    def _store(self, future: asyncio.Future[KafkaSnapshot]) -> None:
        if not future.cancelled() and future.exception() is None:
            self.latest = future.result()
            self._fetched_at = time.monotonic()

    async def existing_topics(self, topics: Iterable[str]) -> list[str]:
        """Those of ``topics`` the broker has, read on the Kafka thread."""
        loop = asyncio.get_running_loop()
        wanted = list(topics)
        found = await loop.run_in_executor(self._executor, lambda: self._partitions(wanted))
        return [t for t in wanted if t in found]

    async def close(self) -> None:
        """Close the Kafka clients once a refresh in progress has finished."""
        _PROBES.discard(self)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_clients)
        await asyncio.to_thread(self._executor.shutdown, True)

    # ---- the Kafka thread -------------------------------------------------------------------

    def _clients(self) -> Consumer:
        if self._reader is None:
            self._reader = open_reader(self.settings)
        return self._reader

    def _group_reader(self, group: str) -> Consumer:
        if group not in self._group_readers:
            self._group_readers[group] = Consumer(consumer_config(self.settings, group))
        return self._group_readers[group]

    def _partitions(self, topics: Iterable[str]) -> dict[str, list[int]]:
        """topic → partition ids, for those of ``topics`` that exist (one metadata request)."""
        meta = self._clients().list_topics(timeout=METADATA_TIMEOUT_S).topics
        out = {}
        for topic in topics:
            info = meta.get(topic)
            if info is not None and info.error is None and info.partitions:
                out[topic] = sorted(info.partitions)
        return out

    def _refresh(self) -> KafkaSnapshot:
        try:
            dlq = sorted({t for i in self.catalog.integrations for t in dlq_topics_of(i)})
            groups = self.groups
            partitions = self._partitions([*dlq, *(t for topics in groups.values() for t in topics)])
            self._counter.update(self._clients(), {t: partitions[t] for t in dlq if t in partitions})
            lag = list(self._read_lag({g: [t for t in topics if t in partitions] for g, topics in groups.items()},
                                      partitions))
            return KafkaSnapshot(int(time.time() * 1000), self._counter.snapshot(), tuple(lag))
        except Exception as exc:  # a broker problem must show on the page, not end the process
            log.warning("reading DLQ depth and consumer lag failed: %s", exc)
            return KafkaSnapshot(int(time.time() * 1000), self.latest.dlq_counts, self.latest.lag,
                                 f"Kafka unavailable: {exc}")

    def _read_lag(self, groups: Mapping[str, list[str]], partitions: Mapping[str, list[int]]
                  ) -> Iterator[PartitionLag]:
        reader = self._clients()
        for group, topics in groups.items():
            tps = [(t, p) for t in topics for p in partitions[t]]
            if not tps:
                continue
            marks = watermarks(reader, tps)
            committed = self._group_reader(group).committed([TopicPartition(t, p) for t, p in tps],
                                                            timeout=METADATA_TIMEOUT_S)
            for tp in committed:
                if tp.error is not None:
                    raise RuntimeError(f"committed offsets of {group}: {tp.error}")
                low, high = marks[(tp.topic, tp.partition)]
                yield PartitionLag(group, tp.topic, tp.partition, tp.offset if tp.offset >= 0 else None, high, low)

    def _close_clients(self) -> None:
        for consumer in [*([self._reader] if self._reader else []), *self._group_readers.values()]:
            consumer.close()
        self._reader = None
        self._group_readers.clear()


# ---- OpenTelemetry gauges ------------------------------------------------------------------------
# Instruments are per process and cannot be removed, so they are created once and observe every
# live probe's latest snapshot (the /metrics handler refreshes the probe before collecting).

_PROBES: weakref.WeakSet[KafkaProbe] = weakref.WeakSet()
_gauges_lock = threading.Lock()
_gauges: dict[str, object] = {}


def _observe_lag(_options: CallbackOptions) -> Iterator[Observation]:
    for probe in list(_PROBES):
        for p in probe.latest.lag:
            yield Observation(p.lag, {"group": p.group, "topic": p.topic, "partition": str(p.partition)})


def _observe_dlq(_options: CallbackOptions) -> Iterator[Observation]:
    for probe in list(_PROBES):
        for (topic, integration), n in probe.latest.dlq_by_topic().items():
            yield Observation(n, {"topic": topic, "integration": integration or "-"})


def register_gauges() -> None:
    """Create ``router_consumer_lag`` and ``router_dlq_depth`` once per process."""
    with _gauges_lock:
        if _gauges:
            return
        meter = metrics.get_meter("router")
        _gauges["lag"] = meter.create_observable_gauge(
            "router_consumer_lag", callbacks=[_observe_lag],
            description="records after the committed offset, per group and partition (Tansu: may be under)")
        _gauges["dlq"] = meter.create_observable_gauge(
            "router_dlq_depth", callbacks=[_observe_dlq], description="records in a DLQ topic, per integration")

"""Reading DLQ topics to their end, with ``assign()`` only.

No consumer group is joined: groups form slowly on the embedded broker (Tansu, DESIGN §7) and a
reader has no partitions to share. Where "the end" is, is the one subtle thing here, and it lives
in :func:`read_to_end`: Tansu reports as high watermark the base offset of the last batch, not
the log end, so reaching the reported watermark is necessary but not sufficient; the end is
reached when every partition is at or past it AND a consume has returned nothing for
``quiet_s``. On Apache Kafka the watermark is exact and the quiet period only costs 0.5 s.

A replay must not chase its own tail (a replayed record that fails again lands in the same DLQ),
so it reads up to a snapshot taken first with :func:`log_end_offsets`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from router import codes
from router import headers as h
from router.errors import ConfigError, RouterError
from router.kafka import admin_client, consumer_config
from router.settings import Settings

READER_GROUP = "router.dlq-reader"  # required by the client; never joined, never committed
QUIET_S = 0.5
IDLE_LIMIT_S = 10.0
METADATA_TIMEOUT_S = 10.0

TP = tuple[str, int]


class ReadFailed(RouterError):
    """The broker failed a read of a DLQ topic (not a problem of any record)."""

    code = codes.DLQ_READ_FAILED


@dataclass(frozen=True)
class DlqRecord:
    """One record read from a DLQ topic, as plain data."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # when it was dead-lettered (0 if the broker gave none)
    key: bytes | None
    value: bytes | None
    raw_headers: tuple[tuple[str, bytes | None], ...]

    @cached_property
    def headers(self) -> dict[str, str]:
        """Headers decoded as UTF-8 strings (last value wins)."""
        return h.to_dict(self.raw_headers)

    @property
    def tp(self) -> TP:
        return self.topic, self.partition

    @property
    def coords(self) -> str:
        """``topic[partition]@offset``."""
        return f"{self.topic}[{self.partition}]@{self.offset}"


def open_reader(settings: Settings, group: str = READER_GROUP) -> Consumer:
    """An assign-only consumer; ``group`` matters only to a caller that commits (the replay cursor)."""
    # Short fetch waits: on a single-broker Tansu, metadata and offset requests of this client
    # queue behind its long-polling fetches.
    return Consumer(consumer_config(settings, group, **{"enable.partition.eof": False, "fetch.wait.max.ms": 100}))


def dlq_topics(settings: Settings) -> list[str]:
    """Every topic whose name ends in ``.dlq``, sorted."""
    try:
        topics = admin_client(settings).list_topics(timeout=METADATA_TIMEOUT_S).topics
    except KafkaException as exc:
        raise ConfigError(f"could not list topics at {settings.kafka_bootstrap_servers}: {exc}") from None
    return sorted(name for name in topics if name.endswith(".dlq"))


def partitions_of(consumer: Consumer, topics: Sequence[str]) -> list[TP]:
    """(topic, partition) of every partition of ``topics``; ConfigError for a topic that does not exist."""
    out: list[TP] = []
    for topic in topics:
        meta = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise ConfigError(f"topic {topic!r} does not exist; `router dlq ls` lists the DLQ topics")
        out.extend((topic, p) for p in sorted(meta.partitions))
    return out


def watermarks(consumer: Consumer, tps: Sequence[TP]) -> dict[TP, tuple[int, int]]:
    """(low, reported high) per partition, fresh from the broker."""
    out = {}
    for topic, partition in tps:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=METADATA_TIMEOUT_S,
                                                   cached=False)
        out[(topic, partition)] = (max(0, low), max(0, high))
    return out


def _record(msg: object) -> DlqRecord:
    ts_type, ts = msg.timestamp()  # type: ignore[attr-defined]
    return DlqRecord(msg.topic() or "", msg.partition() or 0, msg.offset() or 0,  # type: ignore[attr-defined]
                     ts if ts_type and ts > 0 else 0, msg.key(), msg.value(),  # type: ignore[attr-defined]
                     tuple(msg.headers() or ()))  # type: ignore[attr-defined]


def read_to_end(consumer: Consumer, topics: Sequence[str], *, start: Mapping[TP, int] | None = None,
                stop: Mapping[TP, int] | None = None, quiet_s: float = QUIET_S,
                idle_limit_s: float = IDLE_LIMIT_S) -> Iterator[DlqRecord]:
    """Yield every record of ``topics`` from ``start`` (default: the beginning) to the end, per partition in order.

    The end, without ``stop``: every partition's next offset has reached its reported high
    watermark AND a consume returned nothing for ``quiet_s`` (Tansu's watermark is the base
    offset of the last batch, so the watermark alone would miss that batch). With ``stop``
    (offsets from :func:`log_end_offsets`): every partition has reached its ``stop``; records at
    or past it are not yielded. Either way, nothing arriving for ``idle_limit_s`` ends the read
    (records deleted by retention, control records of transactions at the log end).

    The consumer is assigned the partitions while the generator runs and unassigned when it
    ends (an assigned consumer keeps fetching, which delays the client's other requests); the
    caller owns the consumer.
    """
    tps = partitions_of(consumer, topics)
    marks = watermarks(consumer, tps)
    position: dict[TP, int] = {}
    for tp in tps:
        low, _high = marks[tp]
        position[tp] = max(low, (start or {}).get(tp, low))
    target = {tp: (stop[tp] if stop is not None and tp in stop else marks[tp][1]) for tp in tps}
    if stop is not None and all(position[tp] >= target[tp] for tp in tps):
        return
    consumer.assign([TopicPartition(t, p, position[(t, p)]) for t, p in tps])
    try:
        yield from _consume_to_end(consumer, tps, position, target, bounded=stop is not None, quiet_s=quiet_s,
                                   idle_limit_s=idle_limit_s)
    finally:
        consumer.unassign()


def _consume_to_end(consumer: Consumer, tps: list[TP], position: dict[TP, int], target: dict[TP, int], *,
                    bounded: bool, quiet_s: float, idle_limit_s: float) -> Iterator[DlqRecord]:
    last_data = time.monotonic()
    while True:
        messages = consumer.consume(500, min(0.1, quiet_s))
        now = time.monotonic()
        if messages:
            last_data = now
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() in (KafkaError._PARTITION_EOF,):
                    continue
                if err.fatal() or not err.retriable():
                    raise ReadFailed(f"reading {msg.topic()}[{msg.partition()}]: {err.str()}")
                continue
            tp = (msg.topic() or "", msg.partition() or 0)
            offset = msg.offset() or 0
            if bounded and offset >= target[tp]:
                continue
            position[tp] = offset + 1
            yield _record(msg)
        reached = all(position[tp] >= target[tp] for tp in tps)
        idle = now - last_data
        if bounded and reached:
            return
        if reached and idle >= quiet_s:
            return
        if idle >= idle_limit_s:
            return


def log_end_offsets(consumer: Consumer, topics: Sequence[str], quiet_s: float = QUIET_S) -> dict[TP, int]:
    """The true log end (last offset + 1) of every partition now: a snapshot to read up to.

    Reads only from the reported high watermark on (on Tansu, the last batch; on Kafka, nothing).
    """
    tps = partitions_of(consumer, topics)
    ends = {tp: high for tp, (_low, high) in watermarks(consumer, tps).items()}
    for record in read_to_end(consumer, topics, start=dict(ends), quiet_s=quiet_s):
        ends[record.tp] = max(ends[record.tp], record.offset + 1)
    return ends

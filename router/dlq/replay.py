"""`router dlq replay`: put DLQ records back where they failed, resumably and without duplicates.

A run handles the records that were in the DLQ topic when it started (a snapshot of the log
end, so records that fail again and come back are left for the next run), from the cursor on.
Each record is replayed with its original key and value byte for byte and its headers minus the
error ones, plus ``router-replay-count``; the normal pipeline takes it from there.

The cursor is the committed offsets of the consumer group ``router.dlq-replay.<fingerprint>``,
one per (DLQ topic, filter, destination). It only ever moves past records whose replay the
broker has acknowledged. A run killed between a produce and its commit produces those records
again on the next run; the route worker's dedupe (same event id, different record → duplicate)
and the delivery workers' delivered keys stop them from reaching the partner twice
(docs/dlq.md, "Safe to repeat").
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from router import codes
from router import headers as h
from router.dlq.filters import DlqFilter
from router.dlq.read import (
    TP,
    DlqRecord,
    ReadFailed,
    log_end_offsets,
    open_reader,
    partitions_of,
    read_to_end,
    watermarks,
)
from router.errors import ConfigError, RouterError
from router.kafka import producer_config
from router.settings import Settings

CURSOR_PREFIX = "router.dlq-replay."
FLUSH_DEADLINE_S = 60.0
MAX_CHUNK = 500

# Why the record failed last time: not true of the replay. Coordinates, attempts and the first
# failure time stay, so a record that fails again keeps its history (deadletters.error_headers).
DROPPED_HEADERS = frozenset({h.ERROR_CODE, h.ERROR_MESSAGE, h.ERROR_STAGE, h.HTTP_STATUS, h.RESPONSE_BODY,
                             h.CONSUMER_GROUP})

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|m|min))?\s*$")


class ReplayFailed(RouterError):
    """The broker did not acknowledge replayed records; the cursor stays before them."""

    code = codes.DLQ_REPLAY_FAILED


# ---- pure -----------------------------------------------------------------------------------


def replay_headers(raw: Sequence[tuple[str, bytes | None]]) -> list[tuple[str, str | bytes | None]]:
    """The original headers in order, minus the error ones, with ``router-replay-count`` = previous + 1."""
    previous = h.to_dict(raw).get(h.REPLAY_COUNT, "")
    count = int(previous) if previous.isascii() and previous.isdigit() else 0
    kept: list[tuple[str, str | bytes | None]] = [
        (k, v) for k, v in raw if k.lower() not in DROPPED_HEADERS and k.lower() != h.REPLAY_COUNT]
    return [*kept, (h.REPLAY_COUNT, str(count + 1).encode())]


def destination_of(headers: dict[str, str], to: str | None) -> str | None:
    """``--to``, else the record's ``router-original-topic``; None when neither names one."""
    return to or headers.get(h.ORIGINAL_TOPIC) or None


def cursor_group(topic: str, dlq_filter: DlqFilter, to: str | None) -> str:
    """The consumer group holding the cursor of (DLQ topic, filter, destination)."""
    material = f"{topic}\x1f{dlq_filter.fingerprint()}\x1f{to or ''}"
    return CURSOR_PREFIX + hashlib.sha256(material.encode()).hexdigest()[:16]


def parse_rate(text: str) -> float:
    """Records per second from ``20/s``, ``20``, ``600/m``; ConfigError otherwise."""
    match = _RATE.match(text)
    rate = float(match.group(1)) if match else 0.0
    if not match or rate <= 0:
        raise ConfigError(f"--rate {text!r}: give records per second or minute, e.g. 20/s or 600/m")
    return rate / 60 if match.group(2) in ("m", "min") else rate


def chunk_size_for(rate: float | None) -> int:
    """Records per commit: about one commit a second when paced, at most ``MAX_CHUNK``."""
    return MAX_CHUNK if rate is None else max(1, min(MAX_CHUNK, int(rate)))


# ---- the run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayRequest:
    """What to replay and how (the options of `router dlq replay`)."""

    topic: str
    dlq_filter: DlqFilter = field(default_factory=DlqFilter)
    to: str | None = None
    rate: float | None = None  # records per second; None = as fast as the broker takes them
    limit: int | None = None  # replay at most this many records in this run
    dry_run: bool = False
    from_start: bool = False  # ignore the cursor (it is still advanced)
    chunk_size: int | None = None  # records per commit; default from the rate

    @property
    def cursor_group(self) -> str:
        return cursor_group(self.topic, self.dlq_filter, self.to)


@dataclass
class ReplaySummary:
    """Counts of one run. ``skipped`` = did not match the filter (records before the cursor are not counted)."""

    cursor_group: str
    dry_run: bool = False
    replayed: int = 0
    skipped: int = 0
    failed: int = 0
    would_replay: int = 0
    interrupted: bool = False
    resumed: bool = False  # started from a committed cursor (not a new one, not --from-start)
    error: str | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)  # (coords, reason)
    start: dict[TP, int] = field(default_factory=dict)
    end: dict[TP, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        """`router dlq replay --json`: the counts, the cursor and each failure (coordinates, reason)."""
        doc: dict[str, object] = {"replayed": self.replayed, "skipped": self.skipped, "failed": self.failed,
                                  "dry_run": self.dry_run, "interrupted": self.interrupted,
                                  "resumed": self.resumed, "cursor_group": self.cursor_group, "error": self.error,
                                  "failures": [{"record": c, "reason": r} for c, r in self.failures]}
        if self.dry_run:
            doc["would_replay"] = self.would_replay
        return doc

    def line(self) -> str:
        """The machine-readable last line: ``replayed=<n> skipped=<n> failed=<n>`` (+ extras)."""
        text = f"replayed={self.replayed} skipped={self.skipped} failed={self.failed}"
        if self.dry_run:
            text += f" would_replay={self.would_replay} dry_run=true"
        if self.interrupted:
            text += " interrupted=true"
        return text


class ReplayObserver:
    """Hooks for a progress display; every method is optional to override."""

    def started(self, request: ReplayRequest, summary: ReplaySummary, total: int) -> None:
        """Called once the cursor and the snapshot are known; ``total`` = records to look at."""

    def record(self, record: DlqRecord, outcome: str, detail: str) -> None:
        """``outcome``: replay (produced), would_replay, skipped or failed; ``detail``: destination or reason."""

    def committed(self, summary: ReplaySummary) -> None:
        """A chunk was acknowledged and its cursor committed."""


class _Pacer:
    """Spaces produce calls ``1/rate`` apart; waits wake early when the run is stopped."""

    def __init__(self, rate: float | None, stop: threading.Event) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.stop = stop
        self.next_at = time.monotonic()

    def wait(self) -> None:
        if not self.interval:
            return
        delay = self.next_at - time.monotonic()
        if delay > 0:
            self.stop.wait(delay)
        self.next_at = max(self.next_at, time.monotonic() - self.interval) + self.interval


@dataclass
class _Chunk:
    """Records handled since the last commit."""

    positions: dict[TP, int] = field(default_factory=dict)  # offset + 1 of the last handled record
    handled: int = 0
    produced: int = 0
    errors: list[KafkaError] = field(default_factory=list)  # filled by delivery reports
    acked: int = 0

    def on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        # A librdkafka callback: record, never raise (STYLE 3); the loop checks at flush.
        if err is not None:
            self.errors.append(err)
        else:
            self.acked += 1


class _Replay:
    def __init__(self, settings: Settings, request: ReplayRequest, stop: threading.Event,
                 observer: ReplayObserver) -> None:
        self.request = request
        self.stop = stop
        self.observer = observer
        self.summary = ReplaySummary(request.cursor_group, dry_run=request.dry_run)
        self.consumer: Consumer = open_reader(settings, request.cursor_group)
        self.producer: Producer | None = None if request.dry_run else Producer(producer_config(settings))
        self.topics: dict[str, str | None] = {}  # destination -> why it cannot be used, or None
        self.chunk = _Chunk()
        self.pacer = _Pacer(request.rate, stop)

    def run(self) -> ReplaySummary:
        try:
            self._run()
        except (ReplayFailed, ReadFailed) as exc:
            self.summary.error = str(exc)
        except KafkaException as exc:  # broker gone mid-run: nothing past the last commit was committed
            self.summary.error = f"Kafka: {exc}; the cursor is at the last committed chunk, run the replay again"
        return self.summary

    def _run(self) -> None:
        request = self.request
        tps = partitions_of(self.consumer, [request.topic])
        marks = watermarks(self.consumer, tps)
        end = log_end_offsets(self.consumer, [request.topic])
        start = {tp: low for tp, (low, _high) in marks.items()}
        if not request.from_start:
            cursor = self._cursor(tps, marks)
            self.summary.resumed = bool(cursor)
            start.update(cursor)
        self.summary.start, self.summary.end = start, end
        self.observer.started(request, self.summary, sum(max(0, end[tp] - start[tp]) for tp in tps))
        size = request.chunk_size or chunk_size_for(request.rate)
        done = 0
        for record in read_to_end(self.consumer, [request.topic], start=start, stop=end):
            if self.stop.is_set():
                self.summary.interrupted = True
                break
            if request.limit is not None and done >= request.limit:
                break
            done += self._handle(record)
            if self.chunk.handled >= size:
                self._settle()
        else:
            self.summary.interrupted = self.stop.is_set()
        self._settle()

    def _cursor(self, tps: list[TP], marks: dict[TP, tuple[int, int]]) -> dict[TP, int]:
        committed = self.consumer.committed([TopicPartition(t, p) for t, p in tps], timeout=10)
        out = {}
        for tp in committed:
            if tp.error is not None:
                raise ConfigError(f"could not read the replay cursor {self.request.cursor_group}: {tp.error}")
            if tp.offset >= 0:
                out[(tp.topic, tp.partition)] = max(tp.offset, marks[(tp.topic, tp.partition)][0])
        return out

    def _handle(self, record: DlqRecord) -> int:
        """Decide and act on one record; return 1 if it counts towards ``--limit``."""
        request, summary = self.request, self.summary
        self.chunk.positions[record.tp] = record.offset + 1
        self.chunk.handled += 1
        if not request.dlq_filter.matches(record.headers, record.timestamp_ms):
            summary.skipped += 1
            self.observer.record(record, "skipped", "")
            return 0
        destination = destination_of(record.headers, request.to)
        problem = (f"no {h.ORIGINAL_TOPIC} header; replay it with --to TOPIC" if destination is None
                   else self._unusable(destination))
        if h.ORIGINAL_SHA256 in record.headers:
            problem = (f"a stub: the record ({record.headers.get(h.ORIGINAL_SIZE, '?')} bytes) was too large to "
                       f"dead-letter and was cut; find the original by {h.ORIGINAL_SHA256}")
        if destination is None or problem is not None:
            summary.failed += 1
            summary.failures.append((record.coords, problem or ""))
            self.observer.record(record, "failed", problem or "")
            return 0
        if self.producer is None:
            summary.would_replay += 1
            self.observer.record(record, "would_replay", destination)
            return 1
        self.pacer.wait()
        self._produce(self.producer, destination, record)
        self.observer.record(record, "replay", destination)
        return 1

    def _produce(self, producer: Producer, destination: str, record: DlqRecord) -> None:
        while True:
            try:
                producer.produce(destination, key=record.key, value=record.value,
                                 headers=replay_headers(record.raw_headers), on_delivery=self.chunk.on_delivery)
                break
            except BufferError:  # local queue full: serve delivery reports, try again
                producer.poll(0.1)
        self.chunk.produced += 1
        producer.poll(0)

    def _unusable(self, destination: str) -> str | None:
        """Why records cannot go to ``destination`` (a DLQ topic, a missing topic), or None."""
        if destination not in self.topics:
            if destination.endswith(".dlq"):
                self.topics[destination] = f"destination {destination} is a DLQ topic"
            else:
                meta = self.consumer.list_topics(destination, timeout=10).topics.get(destination)
                exists = meta is not None and meta.error is None and bool(meta.partitions)
                self.topics[destination] = None if exists else f"destination topic {destination} does not exist"
        return self.topics[destination]

    def _settle(self) -> None:
        """Finish the chunk, in this order:

        1. flush the producer (deadline ``FLUSH_DEADLINE_S``);
        2. fail if any record is still queued or any delivery report carried an error: the cursor
           stays where it was, and a re-run produces the chunk again (the pipeline drops repeats);
        3. commit offset + 1 of the last handled record per partition, synchronously (not in a
           dry run: a dry run moves nothing);
        4. count the chunk's records as replayed.
        """
        chunk = self.chunk
        if not chunk.positions:
            return
        if self.producer is not None and chunk.produced:
            left = self.producer.flush(FLUSH_DEADLINE_S)
            if left or chunk.errors or chunk.acked != chunk.produced:
                unacked = chunk.produced - chunk.acked
                self.summary.failed += unacked
                why = chunk.errors[0] if chunk.errors else f"{left} record(s) still queued after {FLUSH_DEADLINE_S}s"
                raise ReplayFailed(f"{unacked} replayed record(s) not acknowledged by the broker: {why}; "
                                   "the cursor was not moved, run the replay again")
        if not self.request.dry_run:
            offsets = [TopicPartition(t, p, o) for (t, p), o in chunk.positions.items()]
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                self.summary.replayed += chunk.acked
                raise ReplayFailed(f"could not commit the replay cursor: {exc}; the next run produces these "
                                   "records again and the pipeline drops them as duplicates") from None
        self.summary.replayed += chunk.acked
        self.chunk = _Chunk()
        self.observer.committed(self.summary)

    def close(self) -> None:
        if self.producer is not None:
            self.producer.flush(10)
        self.consumer.close()


def replay(settings: Settings, request: ReplayRequest, *, stop: threading.Event | None = None,
           observer: ReplayObserver | None = None) -> ReplaySummary:
    """Replay ``request.topic`` from its cursor to the end it had when the run started.

    Setting ``stop`` (the CLI does on SIGINT/SIGTERM) ends the run after the records produced
    so far are acknowledged and committed. Returns the counts; ``summary.error`` is set when the
    broker refused records (nothing past them was committed).
    """
    if request.to is not None and request.to == request.topic:
        raise ConfigError("--to names the DLQ topic itself; give the topic the records should go back to")
    if request.to is not None and request.to.endswith(".dlq"):
        raise ConfigError(f"--to {request.to} is a DLQ topic; replay into a data topic")
    run = _Replay(settings, request, stop or threading.Event(), observer or ReplayObserver())
    try:
        return run.run()
    finally:
        run.close()

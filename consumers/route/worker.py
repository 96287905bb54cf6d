"""The route worker's loop: it owns every socket; the stages it calls are pure.

One batch: poll → prepare each record (decode, validate, select, map, encode) → one Redis call
for every dedupe/ordering decision → produce outputs and DLQ writes → flush → commit.
The loop is pipelined on three threads. The main thread polls and prepares batch N+1, then hands
its claims to the ``route-state`` thread (one Redis call per batch, in batch order), while batch N's
produce and flush run on the ``route-io`` thread; every wait releases the GIL. N is committed
before N+1's produce starts, so commits stay in order. A batch that fails anywhere (Redis down,
broker down, a DLQ write refused) is not committed: the consumer is rewound to the first
uncommitted offsets and the batch is retried after a backoff. Redelivered records are recognised
by their coordinates, so a retry (even of a batch whose decisions were already made) never
double-counts. The I/O half of a batch (produce, DLQ writes, outcome counts) is
``consumers.route.finish``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from operator import attrgetter

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumers.route.finish import BatchFailed, BatchFinisher, Staged
from consumers.route.sinks import PRODUCER_CONFIG, BatchSink
from router import codec, codes, groupwatch, health, redisconn
from router.groupwatch import GroupWatch, Throttle, group_progress
from router.kafka import member_config, producer_config
from router.pipeline.records import Candidate, Claim, Decision, Inbound, Prepared
from router.pipeline.stages import RoutingTable, claim_for, prepare
from router.pipeline.state import StateStore
from router.progress import BROKER, OTHER, REDIS, Progress
from router.settings import Settings
from router.telemetry import Heartbeat, Verdict, worker_verdict

log = logging.getLogger("router.route")

_TOPIC_PARTITION = attrgetter("topic", "partition")
_OFFSET = attrgetter("offset")



class DecisionsDiscarded(BatchFailed):
    """A batch queued behind a failed decide: it is decided again, in offset order, after a rewind."""

    code = codes.ROUTE_DECISIONS_DISCARDED
    reason = REDIS  # it follows a decide that failed on Redis


class RegistryUnavailable(BatchFailed):
    """The schema registry did not answer for a schema the batch's Avro records name."""

    reason = OTHER


# Failures that mean "services unavailable": the batch is rewound and retried after a backoff.
RETRYABLE = (*redisconn.UNAVAILABLE, KafkaException, BatchFailed)  # redisconn: either client's errors


def failure_reason(exc: BaseException) -> str:
    """The ``router_batches_failed`` reason of a RETRYABLE failure: redis, broker or other."""
    if isinstance(exc, redisconn.ERRORS):
        return REDIS
    if isinstance(exc, KafkaException):
        return BROKER
    if isinstance(exc, BatchFailed):
        return exc.reason
    return OTHER


@dataclass
class WorkerOptions:
    group: str = "router.route"
    batch_size: int = 2000
    poll_timeout_s: float = 0.2
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 15.0


def to_inbound(msg: Message) -> Inbound:
    """Copy a librdkafka message into plain data."""
    ts_type, ts = msg.timestamp()
    # headers(): the Message's own list (or None); nothing mutates it, so it is not copied
    return Inbound(msg.topic() or "", msg.partition() or 0, msg.offset() or 0, ts if ts_type else 0, msg.key(),
                   msg.value(), msg.headers() or [])  # type: ignore[arg-type]


class RouteWorker:
    """One route worker process; run() until ``stop`` is set."""

    def __init__(self, settings: Settings, table: RoutingTable, state: StateStore,
                 registry: SchemaRegistryClient | None, options: WorkerOptions | None = None,
                 health_client: redisconn.Sync | None = None) -> None:
        self.settings = settings
        self.table = table
        self.state = state
        self.registry = registry
        self.options = options or WorkerOptions()
        self.avro_schemas = codec.Codec(codec.registry_fetch(registry) if registry is not None else None)
        self.consumer = Consumer(member_config(settings, self.options.group))
        self.producer = Producer(producer_config(settings, **PRODUCER_CONFIG))
        self.finisher = BatchFinisher(table, state, BatchSink(self.producer), self.options.group, health_client)
        self.outcomes = self.finisher.outcomes
        self.batches_committed = 0
        self.heartbeat = Heartbeat()
        self.progress = Progress("route", settings.failing_after_s)
        self._row_due = Throttle(health.WORKER_ROW_EVERY_S)
        self._avro_topics = frozenset(t for t, found in table.by_topic.items() if found[0].source.format == "avro")
        self._io = ThreadPoolExecutor(1, thread_name_prefix="route-io")
        self._state_io = ThreadPoolExecutor(1, thread_name_prefix="route-state")  # one batch at a time, in order
        self._inflight: tuple[Future[None], list[Inbound]] | None = None
        self._failed: tuple[BaseException, list[Inbound]] | None = None
        # The decision fence (``decide``): batches are decided in the epoch they were staged in; a
        # failed decide closes its epoch, and the loop opens the next one when it rewinds.
        self._epoch = 0
        self._closed_epoch = -1
        self.watch = groupwatch.register(GroupWatch(self.options.group, settings.session_timeout_ms))
        self._watch_due = Throttle()
        self._health_client = health_client

    def verdict(self) -> Verdict:
        """``/readyz`` and ``/healthz``: the loop is turning, its group is not stuck, and its batches
        have not been failing for ``ROUTER_FAILING_AFTER_S`` (``router.progress``)."""
        return worker_verdict(self.heartbeat, self.watch.stuck, self.progress)

    def healthy(self) -> bool:
        """Is :meth:`verdict` a 200?"""
        return self.verdict().ok

    # ---- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop``; then finish the batch in hand, commit, and leave the group."""
        topics = sorted(self.table.by_topic)
        self.consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)
        log.info("route worker subscribed", extra={"topics": topics, "group": self.options.group})
        backoff = self.options.backoff_initial_s
        try:
            while not stop.is_set():
                self.heartbeat.beat()
                messages = self.consumer.consume(self.options.batch_size, self.options.poll_timeout_s)
                if self._watch_due(time.monotonic()):
                    self._watch_group(topics)
                if self._row_due(time.monotonic()):
                    self._write_row()
                batch = self._records(messages)
                staged: Staged | None = None
                failure: BaseException | None = None
                try:
                    staged = self.run_stages(batch) if batch else None
                except RETRYABLE as exc:
                    failure = exc
                committed = self._drain(asynchronous=True)  # N's I/O ran while N+1 was polled and prepared
                if self._failed is not None:  # N failed (here, or in a revocation inside consume())
                    failure, unfinished = self._failed
                    self._failed = None
                    batch = unfinished + batch
                if committed:
                    self.progress.succeeded()
                if failure is not None:
                    self.progress.failed(failure_reason(failure))
                    log.warning("batch failed, retrying after %.1fs: %s", backoff, failure)
                    self._rewind(batch)  # every record not committed; revoked partitions are skipped
                    self._epoch += 1  # decisions staged from here on follow the rewound records
                    stop.wait(backoff * (0.5 + random.random() / 2))  # jittered, wakes on stop
                    backoff = min(backoff * 2, self.options.backoff_max_s)
                    continue
                if committed:
                    backoff = self.options.backoff_initial_s
                if staged is not None:
                    self._inflight = (self._io.submit(self.finish, staged), staged.batch)
        finally:
            self._drain(asynchronous=False)
            self._io.shutdown(wait=True)
            self._state_io.shutdown(wait=True)
            self.finisher.close()
            self.close()
            health.forget_worker(self._health_client, self.table.key_prefix, self._row_id)

    def close(self) -> None:
        """Flush the producer and leave the group (offsets were committed per batch)."""
        self.producer.flush(10)
        self.consumer.close()

    def _drain(self, *, asynchronous: bool) -> bool:
        """Wait for the batch in flight; commit it and return True if it finished. A RETRYABLE
        failure commits nothing and is kept in ``_failed`` (with the batch) for the loop to rewind
        and back off; any other exception propagates: a bug crashes the worker, uncommitted."""
        if self._inflight is None:
            return False
        future, batch = self._inflight
        self._inflight = None
        try:
            future.result()
        except RETRYABLE as exc:
            self._failed = (exc, batch)
            return False
        self._commit(batch, asynchronous=asynchronous)
        return True

    def _watch_group(self, topics: list[str]) -> None:
        """The stuck-group check (``router.groupwatch``): the broker is asked only after a long
        time without partitions."""
        changed = self.watch.observe(time.monotonic(), bool(self.consumer.assignment()),
                                     lambda: group_progress(self.consumer, topics))
        groupwatch.report(self._health_client, self.table.key_prefix, self.watch, changed)

    @property
    def _row_id(self) -> str:
        return health.worker_field("route", groupwatch.member_name())

    def _write_row(self) -> None:
        """This worker's row on the health page (best effort; skipped while Redis is what fails: it
        could not be written, and trying would hold the loop for the client's timeout)."""
        status = self.progress.status()
        if self._health_client is None or status.reason == REDIS:
            return
        entry = health.worker_entry("route", self.options.group, groupwatch.member_name(), status)
        health.write_worker(self._health_client, self.table.key_prefix, self._row_id, entry)

    def _records(self, messages: Sequence[Message]) -> list[Inbound]:
        batch = []
        for msg in messages:
            err = msg.error()
            if err is None:
                batch.append(to_inbound(msg))
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", err)
        return batch

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Cooperative rebalancing hands out only the partitions that moved (often none).
        if partitions:
            log.info("partitions assigned: %s", [(p.topic, p.partition) for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Callbacks run inside consume(), so the only batch of these partitions not yet committed is
        # the one in flight on the I/O thread: finish and commit it (synchronously) before they go.
        # A batch that failed was not committed: the loop rewinds the partitions it keeps, and the
        # next owner of the others starts at their last commit.
        self._drain(asynchronous=False)
        log.info("partitions revoked: %s", [(p.topic, p.partition) for p in partitions])

    def _rewind(self, batch: Sequence[Inbound]) -> None:
        first: dict[tuple[str, int], int] = {}
        for r in batch:
            key = (r.topic, r.partition)
            first[key] = min(first.get(key, r.offset), r.offset)
        for (topic, partition), offset in first.items():
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:  # partition revoked meanwhile: its new owner starts at the commit
                log.info("not rewinding %s[%d]: %s", topic, partition, exc)

    # ---- one batch --------------------------------------------------------------------------

    def run_stages(self, batch: list[Inbound]) -> Staged:
        """The CPU half of a batch, on the loop's thread: registry schemas the batch's Avro records
        name (rare I/O), the pure stages for every record, then its claims go to ``route-state``.

        Decisions are made in batch order, possibly while the previous batch is still producing.
        A batch that is then rewound is decided again; its records keep their coordinates, so the
        second answer is the first one."""
        now_ms = int(time.time() * 1000)
        self._fetch_schemas(batch)
        table, schemas = self.table, self.avro_schemas
        prepared = [prepare(r, table, schemas, now_ms) for r in batch]
        prefix, tags = table.key_prefix, table.hash_tags
        pairs = [(p, c) for p in prepared for c in p.candidates]
        claims = [claim_for(c, p.inbound.coords, prefix, tags) for p, c in pairs]
        decided = self._state_io.submit(self.decide, pairs, claims, self._epoch) if claims else None
        return Staged(batch, prepared, now_ms, pairs, claims, decided)

    def decide(self, pairs: Sequence[tuple[Prepared, Candidate]], claims: Sequence[Claim], epoch: int
               ) -> list[Decision]:
        """On ``route-state``: one Redis call for the batch's dedupe/ordering decisions, then the
        release of claims whose record goes to the DLQ as stale (so a replay goes through) —
        before the next batch is decided, as if the batches ran one after the other.

        Decisions are stored in offset order, always: no record is decided while an earlier record
        of its partition is undecided. Batch N+1 is queued here while N may still be deciding; if
        N's decide fails (Redis timed out), N+1 must not be decided before N is, or N's older
        versions would be judged stale against watermarks N+1 raised, and that verdict, stored with
        their coordinates, would repeat on every redelivery: events lost. So a failure closes the
        epoch, every decide queued in it is refused without touching Redis (the batch fails and is
        rewound with N), and the loop opens a new epoch when it rewinds."""
        if epoch <= self._closed_epoch:
            raise DecisionsDiscarded("an earlier batch's decisions failed; this batch is decided again after it")
        try:
            decisions = self.state.decide(claims)
            releases = [claim for (_p, c), claim, decision in zip(pairs, claims, decisions, strict=True)
                        if decision is Decision.STALE and c.integration.on_stale == "dlq"]
            if releases:
                self.state.release(releases)
        except BaseException:
            self._closed_epoch = max(self._closed_epoch, epoch)
            raise
        return decisions

    def finish(self, staged: Staged) -> None:
        """The I/O half of a batch, on the ``route-io`` thread, in this order:

        1. wait for the batch's decisions (``decide``, on ``route-state``);
        2. produce outputs and DLQ records; flush; a record the broker refused for good goes to
           the DLQ (then flush again); any other failure raises BatchFailed: nothing committed
           (``BatchFinisher.finish``);
        3. publish the batch's outcome counts; hand its health tallies to the ``route-health``
           thread, which writes them at most once a second. The loop commits after this returns.
        """
        try:
            self.finisher.finish(staged)
        except RETRYABLE:
            self.finisher.discard()
            raise
        self.batches_committed += 1
        self.finisher.publish()

    def _commit(self, batch: Sequence[Inbound], *, asynchronous: bool) -> None:
        """Commit offset + 1 of the batch's last record per partition. Asynchronous between batches
        (a lost commit only means a redelivery, recognised by coordinates); synchronous before
        partitions go and at shutdown."""
        # One poll: offsets ascend per partition, so the last one seen is the highest.
        last = dict(zip(map(_TOPIC_PARTITION, batch), map(_OFFSET, batch), strict=True))
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        try:
            if asynchronous:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # finished but not committed: redelivered, recognised by coordinates
            log.warning("commit failed; the batch will be redelivered: %s", exc)

    def _fetch_schemas(self, batch: Sequence[Inbound]) -> None:
        if self.registry is None or not self._avro_topics:
            return
        for r in batch:
            if r.topic not in self._avro_topics:
                continue
            sid = self.avro_schemas.missing(r.value)
            if sid is None:
                continue
            try:
                self.avro_schemas.fetch(sid)
            except Exception as exc:  # unknown id: the record goes to the DLQ as decode.unknown_schema
                if getattr(exc, "http_status_code", None) == 404:
                    continue
                raise RegistryUnavailable(f"schema registry unavailable: {exc}") from None


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
double-counts.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import fastavro
import orjson
import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from opentelemetry import trace

from consumers.route.sinks import PRODUCER_CONFIG, BatchSink, Pending, is_permanent
from router import headers as h
from router.errors import EncodeError, OrderError, RecordError, RouterError
from router.health import HealthBatch, HealthWriter
from router.kafka import consumer_config, dlq_topic, producer_config
from router.outcomes import Outcomes
from router.pipeline.records import Candidate, Claim, Decision, Inbound, Prepared
from router.pipeline.stages import RoutingTable, claim_for, dlq_headers, prepare, schema_id_of
from router.pipeline.state import StateStore
from router.settings import Settings
from router.telemetry import Heartbeat
from router.tracing import sampled, start_child

log = logging.getLogger("router.route")
_tracer = trace.get_tracer("router.route")


class BatchFailed(RouterError):
    """The batch could not be finished; it is retried, nothing is committed."""

    code = "route.batch_failed"


_TOPIC_PARTITION = attrgetter("topic", "partition")
_OFFSET = attrgetter("offset")

# Failures that mean "services unavailable": the batch is rewound and retried after a backoff.
RETRYABLE = (redis.RedisError, KafkaException, BatchFailed, OSError)


@dataclass
class Staged:
    """A batch whose pure stages ran and whose decisions are being made on ``route-state``; its
    I/O half (produce → flush) comes next."""

    batch: list[Inbound]
    prepared: list[Prepared]
    now_ms: int
    pairs: list[tuple[Prepared, Candidate]]
    claims: list[Claim]
    decided: Future[list[Decision]] | None  # None: no candidates, nothing to decide


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
    headers = msg.headers() or []
    return Inbound(msg.topic() or "", msg.partition() or 0, msg.offset() or 0, ts if ts_type else 0, msg.key(),
                   msg.value(), list(headers))  # type: ignore[arg-type]


class RouteWorker:
    """One route worker process; run() until ``stop`` is set."""

    def __init__(self, settings: Settings, table: RoutingTable, state: StateStore,
                 registry: SchemaRegistryClient | None, options: WorkerOptions | None = None,
                 health_client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.table = table
        self.state = state
        self.registry = registry
        self.options = options or WorkerOptions()
        self.outcomes = Outcomes()
        self.avro_schemas: dict[int, Any] = {}
        self.consumer = Consumer(consumer_config(settings, self.options.group))
        self.producer = Producer(producer_config(settings, **PRODUCER_CONFIG))
        self.sink = BatchSink(self.producer)
        self.batches_committed = 0
        self.heartbeat = Heartbeat()
        self.health = HealthBatch()
        self.health_client = health_client
        self.health_writer = HealthWriter(table.key_prefix, success_field="last_routed_ms")
        # Integrations with no delivery worker (no ``http``): routing a record is its success.
        self._routing_is_success = frozenset(i.name for found in table.by_topic.values() for i in found
                                             if not i.destination.http)
        self._avro_topics = frozenset(t for t, found in table.by_topic.items() if found[0].source.format == "avro")
        self._io = ThreadPoolExecutor(1, thread_name_prefix="route-io")
        self._state_io = ThreadPoolExecutor(1, thread_name_prefix="route-state")  # one batch at a time, in order
        self._inflight: tuple[Future[None], list[Inbound]] | None = None
        self._failed: tuple[BaseException, list[Inbound]] | None = None

    # ---- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop``; then finish the batch in hand, commit, and leave the group."""
        topics = sorted(self.table.by_topic)
        self.consumer.subscribe(topics, on_revoke=self._on_revoke, on_lost=self._on_revoke)
        log.info("route worker subscribed", extra={"topics": topics, "group": self.options.group})
        backoff = self.options.backoff_initial_s
        try:
            while not stop.is_set():
                self.heartbeat.beat()
                messages = self.consumer.consume(self.options.batch_size, self.options.poll_timeout_s)
                batch = self._records(messages)
                staged: Staged | None = None
                failure: BaseException | None = None
                try:
                    staged = self.stage(batch) if batch else None
                except RETRYABLE as exc:
                    failure = exc
                committed = self._drain(asynchronous=True)  # N's I/O ran while N+1 was polled and prepared
                if self._failed is not None:  # N failed (here, or in a revocation inside consume())
                    failure, unfinished = self._failed
                    self._failed = None
                    batch = unfinished + batch
                if failure is not None:
                    log.warning("batch failed, retrying after %.1fs: %s", backoff, failure)
                    self._rewind(batch)  # every record not committed; revoked partitions are skipped
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
            self.close()

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

    def _records(self, messages: Sequence[Message]) -> list[Inbound]:
        batch = []
        for msg in messages:
            err = msg.error()
            if err is None:
                batch.append(to_inbound(msg))
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", err)
        return batch

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

    def stage(self, batch: list[Inbound]) -> Staged:
        """The CPU half of a batch, on the loop's thread: registry schemas the batch's Avro records
        name (rare I/O), the pure stages for every record, then its claims go to ``route-state``.

        Decisions are made in batch order, possibly while the previous batch is still producing.
        A batch that is then rewound is decided again; its records keep their coordinates, so the
        second answer is the first one."""
        now_ms = int(time.time() * 1000)
        self._fetch_schemas(batch)
        table, schemas = self.table, self.avro_schemas
        prepared = [prepare(r, table, schemas, now_ms) for r in batch]
        prefix = table.key_prefix
        pairs = [(p, c) for p in prepared for c in p.candidates]
        claims = [claim_for(c, p.inbound.coords, prefix) for p, c in pairs]
        decided = self._state_io.submit(self.decide, pairs, claims) if claims else None
        return Staged(batch, prepared, now_ms, pairs, claims, decided)

    def decide(self, pairs: Sequence[tuple[Prepared, Candidate]], claims: Sequence[Claim]) -> list[Decision]:
        """On ``route-state``: one Redis call for the batch's dedupe/ordering decisions, then the
        release of claims whose record goes to the DLQ as stale (so a replay goes through) —
        before the next batch is decided, as if the batches ran one after the other."""
        decisions = self.state.decide(claims)
        releases = [claim for (_p, c), claim, decision in zip(pairs, claims, decisions, strict=True)
                    if decision is Decision.STALE and c.integration.on_stale == "dlq"]
        if releases:
            self.state.release(releases)
        return decisions

    def finish(self, staged: Staged) -> None:
        """The I/O half of a batch, on the ``route-io`` thread, in this order:

        1. wait for the batch's decisions (``decide``, on ``route-state``);
        2. produce outputs and DLQ records; flush; a record the broker refused for good goes to
           the DLQ (then flush again); any other failure raises BatchFailed: nothing committed;
        3. publish the batch's outcome counts and health. The loop commits after this returns.
        """
        try:
            self._finish(staged)
        except RETRYABLE:
            self.outcomes.drop_batch()
            self.health.clear()
            raise
        self.outcomes.commit_batch("route")
        self.batches_committed += 1
        self._write_health()

    def _finish(self, staged: Staged) -> None:
        prepared, now_ms = staged.prepared, staged.now_ms
        decisions = staged.decided.result() if staged.decided is not None else []
        send = self.sink.send
        routed: Counter[tuple[str, str]] = Counter()  # (tenant, integration): counted per batch, not per record
        for (p, c), claim, decision in zip(staged.pairs, staged.claims, decisions, strict=True):
            if decision is not Decision.ROUTE and self._not_routed(p, c, claim, decision, now_ms):
                continue
            if c.headers[-1][0] == h.TRACEPARENT and self._sampled(c):  # the name test first: no call per record
                self._trace(c)
            send(c.integration.destination.topic, c.key, c.value, c.headers, (p, claim), False)
            routed[c.tenant, c.integration.name] += 1
        for (tenant, name), n in routed.items():
            self.outcomes.add("routed", tenant, name, n=n)
            if name in self._routing_is_success:
                self.health.ok(name, tenant, n)
        for p in prepared:
            tenant = p.tenant
            for failure in p.failures:
                send(*self._dlq(p.inbound, failure.error, failure.integration, now_ms, (p, None)))
                self.outcomes.add("dlq", tenant, failure.integration or "", failure.error.code)
                for name in ([failure.integration] if failure.integration else self._integrations_of(p.inbound)):
                    self.health.fail(name, tenant, failure.error.code, failure.error.message, p.inbound.value)
            if p.ignored:
                self.outcomes.add("ignored", tenant)
        self._settle(self.sink.flush(), now_ms)

    def _not_routed(self, p: Prepared, c: Candidate, claim: Claim, decision: Decision, now_ms: int) -> bool:
        """Count a duplicate or stale candidate; True when it is not delivered (dropped or DLQ'd)."""
        name = c.integration.name
        if decision is Decision.DUPLICATE:
            self.outcomes.add("duplicate", c.tenant, name)
            return True
        policy = c.integration.on_stale
        if policy == "drop":
            self.outcomes.add("stale", c.tenant, name)
            return True
        if policy == "dlq":  # its claim was released by ``decide``
            err = OrderError(f"version {c.version} is not newer than the entity's watermark", code="order.stale")
            self.sink.send(*self._dlq(p.inbound, err, name, now_ms, (p, claim)))
            self.outcomes.add("dlq", c.tenant, name, "order.stale")
            self.health.fail(name, c.tenant, err.code, err.message, p.inbound.value)
            return True
        self.outcomes.add("stale_delivered", c.tenant, name)
        return False

    @staticmethod
    def _sampled(candidate: Candidate) -> bool:
        """Is the traceparent in the candidate's last header sampled? (the caller checked the name)"""
        value = candidate.headers[-1][1]
        return value is not None and sampled(value.decode())

    def _trace(self, candidate: Candidate) -> None:
        """A span for routing this record; the output carries the span's traceparent."""
        incoming = (candidate.headers[-1][1] or b"").decode()
        span, outgoing = start_child(_tracer, f"route {candidate.integration.name}", incoming, attributes={
            "router.tenant": candidate.tenant, "router.integration": candidate.integration.name,
            "router.event_id": candidate.event_id,
            "messaging.destination.name": candidate.integration.destination.topic})
        span.end()
        candidate.headers[-1] = (h.TRACEPARENT, outgoing.encode())

    def _write_health(self) -> None:
        # Best effort, after the commit: health is for people, never a reason to redo a batch.
        if self.health_client is None:
            self.health.clear()
            return
        try:
            self.health_writer.write(self.health_client, self.health)
        except redis.RedisError as exc:
            log.warning("health not recorded: %s", exc)
            self.health.clear()

    def _integrations_of(self, inbound: Inbound) -> list[str]:
        """Every integration on the record's topic: a record that failed before selection concerns them all."""
        return [i.name for i in self.table.by_topic.get(inbound.topic, ())]

    def _dlq(self, inbound: Inbound, error: RecordError, integration: str | None, now_ms: int,
             tag: object) -> tuple[str, Any, Any, Any, Any, bool]:
        headers = dlq_headers(inbound, error, group=self.options.group, integration=integration, now_ms=now_ms)
        return dlq_topic(inbound.topic), inbound.key, inbound.value, headers, tag, True

    def _settle(self, failed: list[Pending], now_ms: int) -> None:
        """Outputs refused for good go to the DLQ; anything else fails the batch."""
        if not failed:
            return
        retry: list[Pending] = []
        for item in failed:
            if item.is_dlq or not is_permanent(item.error):
                raise BatchFailed(f"{len(failed)} record(s) not acknowledged by the broker: {item.error}")
            retry.append(item)
        releases = []
        for item in retry:
            prepared: Prepared
            claim: Claim | None
            prepared, claim = item.tag  # type: ignore[misc]
            err = EncodeError(f"the broker refused the output: {item.error}", code="encode.too_large")
            topic, key, value, headers, tag, _ = self._dlq(prepared.inbound, err, claim.field if claim else None,
                                                           now_ms, item.tag)
            self.sink.send(topic, key, value, headers, tag, True)
            if claim is not None:
                releases.append(claim)
            self.outcomes.add("dlq", prepared.tenant, claim.field if claim else "", "encode.too_large")
            self.health.fail(claim.field if claim else "", prepared.tenant, err.code, err.message,
                             prepared.inbound.value)
        if releases:
            self.state.release(releases)
        still = self.sink.flush()
        if still:
            raise BatchFailed(f"{len(still)} DLQ record(s) not acknowledged by the broker: {still[0].error}")

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
            sid = schema_id_of(r.value)
            if sid is None or sid in self.avro_schemas:
                continue
            try:
                schema = self.registry.get_schema(sid)
            except Exception as exc:  # unknown id: the record goes to the DLQ as decode.unknown_schema
                if getattr(exc, "http_status_code", None) == 404:
                    continue
                raise BatchFailed(f"schema registry unavailable: {exc}") from None
            self.avro_schemas[sid] = fastavro.parse_schema(orjson.loads(schema.schema_str or "null"))


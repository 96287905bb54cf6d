"""The delivery worker: delivery.<destination> topics → partner APIs (DESIGN §4, §5).

An asyncio loop owns everything that waits: HTTP (aiohttp, connection reuse), Redis (rate limits,
delivered keys, integration state) and Kafka (one thread runs every consumer call, so librdkafka
is only ever touched from there). Records wait in per-key lanes (``lanes.py``); a lane's head is
sent, retried with backoff or Retry-After, or dead-lettered; offsets are committed only for each
partition's contiguous prefix of finished records.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import orjson
import redis
import redis.asyncio as aioredis
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from consumers.deliver.auth import Auth, AuthFailed, TokenUnavailable, build_auth
from consumers.deliver.config import HttpTarget
from consumers.deliver.delivered import DeliveredKeys, delivered_key
from consumers.deliver.lanes import TP, Item, Lanes, batches, now
from consumers.deliver.payload import batch_idempotency_key, envelope, idempotency_key, join_body, record_json, to_json
from consumers.deliver.ratelimit import SharedRateLimiter, hold_key
from consumers.deliver.status import Answer, Verdict, backoff_s, classify_status, interpret
from router import codec, codes, deadletters, groupwatch
from router import headers as h
from router.controls import parse, state_key
from router.deadletters import DeadLetter
from router.groupwatch import GroupWatch, Throttle, group_progress
from router.health import HealthBatch, HealthWriter
from router.kafka import dlq_topic, member_config, producer_config
from router.outcomes import Outcomes, delivery_request_seconds, end_to_end_seconds
from router.redact import fields_from_env, redact_text
from router.settings import Settings
from router.telemetry import Heartbeat
from router.tracing import sampled, start_child

log = logging.getLogger("router.deliver")
_tracer = trace.get_tracer("router.deliver")
T = TypeVar("T")

RESPONSE_BODY_LIMIT = deadletters.RESPONSE_BODY_LIMIT
HOLD_CAP_S = 3600.0  # a Retry-After further out than this is taken as this
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")  # W3C, version 00
# Redis being down or frozen: wait and try again, never exit (DESIGN §4: only slow a batch).
RETRYABLE_REDIS = (redis.RedisError, OSError, TimeoutError)
# What may fail a request before the partner answers and passes by itself: retried, not dead-lettered.
TRANSIENT = (*RETRYABLE_REDIS, aiohttp.ClientError, TokenUnavailable, AuthFailed, ConnectionError,
             asyncio.TimeoutError)
# Commit failures a rebalance causes: the partitions' next owner resumes from the last commit.
REBALANCE_ERRORS = frozenset({KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS,
                              KafkaError.UNKNOWN_MEMBER_ID, KafkaError._NO_OFFSET, KafkaError._STATE})
REGISTRY_RETRY_S = 2.0  # a record whose schema the registry could not give (down) is decoded again after this
DELIVERED_TTL_MIN_S = 7 * 24 * 3600


@dataclass
class DeliverOptions:
    group: str = "router.deliver"
    concurrency: int = 8  # requests in flight per integration
    max_backlog: int = 5000  # records held per partition before it is paused
    commit_interval_s: float = 0.5
    state_interval_s: float = 0.5  # pause and needs_reconnect stop new requests within this (+ one request)
    revoke_wait_s: float = 10.0  # how long a revocation waits for the revoked partitions' requests in flight
    # Integrations that share this worker's delivery topics but another group delivers (`--only`
    # with its own `--group`): their records are skipped here, never dead-lettered.
    others: frozenset[str] = frozenset()


class DeliverWorker:
    """One delivery worker process; ``await run(stop)``."""

    def __init__(self, settings: Settings, targets: dict[str, HttpTarget], registry: SchemaRegistryClient,
                 options: DeliverOptions | None = None) -> None:
        self.settings = settings
        self.targets = targets
        self.registry = registry
        self.options = options or DeliverOptions()
        self.prefix = settings.redis_key_prefix
        self.outcomes = Outcomes()
        self.lanes = Lanes()
        self.active: set[str] = set(targets)
        self.paused_tps: set[TP] = set()
        self.revoked: list[TP] = []  # from the Kafka thread: partitions to drop at the next pass
        self.revoking: set[TP] = set()  # partitions going away: no request starts for their records
        self.in_flight: Counter[TP] = Counter()  # records in an HTTP request, by partition
        self._loop: asyncio.AbstractEventLoop | None = None
        self.codec = codec.Codec(codec.registry_fetch(registry))  # schemas by id, each fetched once
        self._kafka = ThreadPoolExecutor(1, thread_name_prefix="kafka")  # every consumer call
        self._producing = ThreadPoolExecutor(1, thread_name_prefix="kafka-producer")  # produce, poll, flush
        self.consumer = Consumer(member_config(settings, self.options.group))
        self.producer = Producer(producer_config(settings))
        self.redis = aioredis.Redis.from_url(settings.redis_url or "", socket_timeout=5)
        self.limiter = SharedRateLimiter(self.redis, self.prefix)
        self.delivered_keys = DeliveredKeys(self.redis, self.prefix)
        self.auth: dict[str, Auth] = {name: build_auth(t.auth) for name, t in targets.items()}
        self.slots = {name: asyncio.Semaphore(self.options.concurrency) for name in targets}
        self.tasks: set[asyncio.Task[None]] = set()
        self.heartbeat = Heartbeat()
        self.health = HealthBatch()
        self.health_writer = HealthWriter(self.prefix)
        self.redact_fields = fields_from_env(os.environ)
        self._state_failures = 0
        self.holds: dict[str, float] = {}  # hold key -> epoch seconds before which nothing is sent
        self.watch = groupwatch.register(GroupWatch(self.options.group, settings.session_timeout_ms))
        self._watch_due = Throttle()

    def healthy(self) -> bool:
        """``/healthz``: the loop is turning and its group is not stuck."""
        return self.heartbeat.healthy() and not self.watch.stuck

    async def _k(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a consumer call on the Kafka thread (librdkafka's consumer is touched from there only)."""
        return await asyncio.get_running_loop().run_in_executor(self._kafka, fn, *args)

    async def _p(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a producer call on its own thread, so consumer calls never wait behind a poll."""
        return await asyncio.get_running_loop().run_in_executor(self._producing, fn, *args)

    # ---- the loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop``; then wait for requests in flight, commit what finished, leave."""
        topics = sorted({f"delivery.{t.destination}" for t in self.targets.values()})
        self._loop = asyncio.get_running_loop()
        await self._k(lambda: self.consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                                      on_lost=self._on_lost))
        poll_producer = asyncio.create_task(self._poll_producer(stop))
        connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=30)
        last_commit = next_state = 0.0
        async with aiohttp.ClientSession(connector=connector) as self.session:
            try:
                while not stop.is_set():
                    self.heartbeat.beat()
                    busy = self.lanes.size() > 0
                    messages = await self._k(self.consumer.consume, 500, 0.05 if busy else 0.2)
                    if self._watch_due(time.monotonic()):
                        changed = await self._k(self._observe_group, topics)
                        await groupwatch.report_async(self.redis, self.prefix, self.watch, changed)
                    self._drop_revoked()
                    await self._accept(messages)
                    if time.monotonic() >= next_state:
                        next_state = time.monotonic() + await self._refresh_states()
                    self._dispatch()
                    if time.monotonic() - last_commit >= self.options.commit_interval_s:
                        await self._commit()
                        last_commit = time.monotonic()
                    await self._flow_control()
            finally:
                if self.tasks:
                    await asyncio.wait(self.tasks, timeout=30)
                await self._commit()
                stop.set()
                await poll_producer
                await self._p(self.producer.flush, 10)
                await self._k(self.consumer.close)
                await self.redis.aclose()
                self._kafka.shutdown(wait=True)
                self._producing.shutdown(wait=True)

    def _observe_group(self, topics: list[str]) -> bool:
        """On the Kafka thread: the stuck-group check (``router.groupwatch``)."""
        return self.watch.observe(time.monotonic(), bool(self.consumer.assignment()),
                                  lambda: group_progress(self.consumer, topics))

    async def _poll_producer(self, stop: asyncio.Event) -> None:
        # Delivery reports for DLQ writes are served here; their callbacks only resolve futures.
        while not stop.is_set():
            await self._p(self.producer.poll, 0.1)

    # ---- rebalances: callbacks run on the Kafka thread inside consume(), the event loop is free --------

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions go to another member. In this order, so that no record is sent by both:
        1. the loop stops starting requests for their records (``revoking``);
        2. requests in flight for them finish (or ``revoke_wait_s`` passes): their delivered keys
           are written, so the new owner skips them;
        3. what finished is committed (a failure is logged: the new owner redoes it, delivered keys
           keep it from being sent twice); then they are released, and dropped at the next pass.
        Never raises (STYLE §3)."""
        tps = {(p.topic, p.partition) for p in partitions}
        handoff = _Revocation(tps)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._revocation_started, handoff)
            if not handoff.done.wait(self.options.revoke_wait_s + 5):
                log.warning("revocation of %d partition(s) did not drain in time", len(tps))
        if handoff.positions:
            _commit_guarded(consumer, [TopicPartition(t, p, o) for (t, p), o in handoff.positions.items()])
        self.revoked.extend(tps)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions already belong to someone else: stop their requests, commit nothing, drop them."""
        tps = {(p.topic, p.partition) for p in partitions}
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.revoking.update, tps)
        self.revoked.extend(tps)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        if tps and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.revoking.difference_update, tps)

    def _revocation_started(self, handoff: _Revocation) -> None:
        self.revoking |= handoff.tps
        self._spawn(self._drain_revoked(handoff))

    async def _drain_revoked(self, handoff: _Revocation) -> None:
        deadline = time.monotonic() + self.options.revoke_wait_s
        try:
            while any(self.in_flight[tp] for tp in handoff.tps) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            handoff.positions = self.lanes.commit_positions(only=handoff.tps)
        finally:
            handoff.done.set()

    def _drop_revoked(self) -> None:
        if self.revoked:
            tps = set(self.revoked)
            self.revoked.clear()
            self.lanes.drop_partitions(tps)
            self.paused_tps -= tps
            for tp in tps:
                self.in_flight.pop(tp, None)

    async def _commit(self) -> None:
        positions = self.lanes.commit_positions()
        if positions:
            offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
            await self._k(_commit_guarded, self.consumer, offsets)
            self.outcomes.commit_batch("deliver")
        if self.health.rows:
            try:  # best effort: health is for people, never a reason to hold a commit
                pipe = self.redis.pipeline(transaction=False)
                self.health_writer.queue(pipe, self.health)
                await pipe.execute()
            except Exception as exc:
                log.warning("health not recorded: %s", exc)
                self.health.clear()

    async def _flow_control(self) -> None:
        """Pause a partition holding too many unfinished records; resume it when it drains."""
        limit = self.options.max_backlog
        for tp, track in list(self.lanes.tracks.items()):
            backlog = track.backlog()
            try:
                if backlog > limit and tp not in self.paused_tps:
                    await self._k(self.consumer.pause, [TopicPartition(*tp)])
                    self.paused_tps.add(tp)
                elif backlog < limit // 2 and tp in self.paused_tps:
                    await self._k(self.consumer.resume, [TopicPartition(*tp)])
                    self.paused_tps.discard(tp)
            except KafkaException as exc:  # revoked meanwhile: dropped at the next pass
                log.info("flow control skipped %s[%d]: %s", tp[0], tp[1], exc)

    async def _refresh_states(self) -> float:
        """Read every integration's state; return the seconds until the next read: the interval,
        or a doubling backoff (to 15 s) while Redis does not answer — the last states stay."""
        names = list(self.targets)
        holds = sorted({hold_key(self.prefix, t.destination, None) for t in self.targets.values()})
        try:
            raw = await self.redis.mget([state_key(self.prefix, n) for n in names])
            for key, until_ms in zip(holds, await self.limiter.holds(holds), strict=True):
                if until_ms:
                    self.holds[key] = max(self.holds.get(key, 0.0), until_ms / 1000)
        except RETRYABLE_REDIS as exc:
            self._state_failures += 1
            wait = min(self.options.state_interval_s * 2 ** self._state_failures, 15.0)
            log.warning("integration states unavailable (%d in a row), next try in %.0fs: %s",
                        self._state_failures, wait, exc)
            return wait
        self._state_failures = 0
        self.active = {n for n, v in zip(names, raw, strict=True) if parse(n, v).state == "active"}
        now_s = time.time()
        self.holds = {k: v for k, v in self.holds.items() if v > now_s}
        return self.options.state_interval_s

    # ---- records in -------------------------------------------------------------------------

    async def _accept(self, messages: list[Message]) -> None:
        good = []
        unfetched: dict[int, tuple[str, bool]] = {}  # schema id -> (why the registry did not give it, passing?)
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", err)
                continue
            good.append(msg)
            # The schemas the batch names first (rare I/O, on the Kafka thread); then pure work.
            sid = self.codec.missing(msg.value())
            if sid is not None and sid not in unfetched:
                try:
                    await self._k(self.codec.fetch, sid)
                except Exception as exc:  # unknown id: the record's decode says so; registry down: later
                    unfetched[sid] = (f"schema id {sid} could not be fetched: {exc}", _passes(exc))
        for msg in good:
            item = self._item(msg, unfetched)
            if item.integration in self.options.others:
                self.lanes.skip(item)
                self.outcomes.add("not_selected", item.tenant, item.integration)
            else:
                self.lanes.add(item)

    def _item(self, msg: Message, unfetched: dict[int, tuple[str, bool]]) -> Item:
        raw_headers = msg.headers()
        hdrs = h.to_dict(raw_headers)  # type: ignore[arg-type]
        name = hdrs.get(h.INTEGRATION, "")
        # Identity is never guessed: a replaced byte could make two events one (the second skipped).
        tenant = h.identity(raw_headers, h.TENANT) or ""  # type: ignore[arg-type]
        event_id = h.identity(raw_headers, h.EVENT_ID) or ""  # type: ignore[arg-type]
        ts_type, ts = msg.timestamp()
        item = Item(msg.topic() or "", msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value(),
                    list(raw_headers or []), name, tenant, event_id,  # type: ignore[arg-type]
                    idempotency_key(tenant, name, event_id), None, (ts / 1000) if ts_type and ts > 0 else time.time())
        # A junk traceparent is dropped, never a reason to fail the record (it becomes an HTTP header).
        traceparent = hdrs.get(h.TRACEPARENT)
        item.traceparent = traceparent if traceparent and _TRACEPARENT.fullmatch(traceparent) else None
        received = hdrs.get(h.RECEIVED_AT, "")
        item.received_at_ms = (int(received) if received.isascii() and received.isdigit() and len(received) <= 16
                               else None)
        if name not in self.targets:
            why = f"no loaded integration {name!r} delivers this record"
            item.dlq = (codes.DELIVER_UNKNOWN_INTEGRATION, why, None, b"")
        elif not event_id or not tenant:
            which = h.EVENT_ID if not event_id else h.TENANT
            if hdrs.get(which):
                why = (f"{which} is not an identity: it must be UTF-8 of 1 to {h.MAX_EVENT_ID_CHARS} characters, "
                       f"got {len(hdrs[which])} character(s) after decoding")
                item.dlq = (codes.DELIVER_BAD_HEADER, why, None, b"")
            else:
                item.dlq = (codes.DELIVER_MISSING_EVENT_ID if which == h.EVENT_ID else codes.DELIVER_BAD_HEADER,
                            f"the record has no {which} header", None, b"")
        else:
            self._decode_into(item, unfetched)
        return item

    def _decode_into(self, item: Item, unfetched: dict[int, tuple[str, bool]]) -> None:
        """Decode ``item``'s value and make its JSON, or set its dead letter. A schema the registry
        could not give for a passing reason (down, timing out) is no fault of the record: it is
        marked ``undecoded`` and decoded again later (``_redecode``), never dead-lettered."""
        try:
            item.record = self.codec.decode(item.value)
        except codec.UnknownSchema as exc:
            why, passing = unfetched.get(exc.schema_id, (str(exc), False))
            if passing:
                item.undecoded = True
                item.not_before = now() + REGISTRY_RETRY_S
                return
            item.dlq = (codes.DELIVER_DECODE, why[:500], None, b"")
        except ValueError as exc:  # not framed, corrupt Avro
            item.dlq = (codes.DELIVER_DECODE, str(exc)[:500], None, b"")
        except Exception as exc:  # a record is the unit of failure, never the worker's
            item.dlq = (codes.INTERNAL_DECODE, f"decode failed unexpectedly: {type(exc).__name__}", None, b"")
        else:
            # Its JSON once, here: batches are cut by the size of the body as sent (max_bytes).
            target = self.targets[item.integration]
            item.delivered_key = delivered_key(self.prefix, target.destination, item.idempotency_key)
            try:
                item.json = (to_json(item.record) if target.max_records == 1
                             else record_json(item.record, item.idempotency_key, target.id_field))
            except Exception as exc:  # what the JSON body cannot hold: as a failed request was
                item.dlq = (codes.INTERNAL_DELIVER, f"deliver failed unexpectedly: {type(exc).__name__}: "
                            f"{str(exc)[:200]}", None, b"")

    async def _redecode(self, item: Item) -> None:
        """Fetch the schema of an ``undecoded`` head again; decode it, or try later while the
        registry still fails for a passing reason."""
        sid = codec.schema_id_of(item.value)
        unfetched: dict[int, tuple[str, bool]] = {}
        if sid is not None:
            try:
                await self._k(self.codec.fetch, sid)
            except Exception as exc:
                unfetched[sid] = (f"schema id {sid} could not be fetched: {exc}", _passes(exc))
                if unfetched[sid][1]:
                    log.warning("schema registry unavailable, %s[%d]@%d waits: %s", item.topic, item.partition,
                                item.offset, exc)
        item.undecoded = False
        self._decode_into(item, unfetched)
        self.lanes.retry(item, item.not_before if item.undecoded else 0.0)

    # ---- dispatch ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        ready = self.lanes.ready(now(), self.active)
        by_integration: dict[str, list[Item]] = {}
        for item in ready:
            if item.dlq is not None:
                self.lanes.start(item)
                self._spawn(self._dead_letter(item))
                continue
            if item.undecoded:
                self.lanes.start(item)
                self._spawn(self._redecode(item))
                continue
            by_integration.setdefault(item.integration, []).append(item)
        for name, items in by_integration.items():
            target = self.targets[name]
            head, tail = envelope(target.batch_key)
            for batch in batches(items, target.max_records, target.max_bytes, len(head) + len(tail)):
                for item in batch:
                    self.lanes.start(item)
                self._spawn(self._deliver(target, batch))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery task failed: %r", task.exception())

    # ---- one request ------------------------------------------------------------------------

    async def _deliver(self, target: HttpTarget, items: list[Item]) -> None:
        # What this task still holds: ``_send`` drops what it finishes or hands back unsent, so a
        # failure never touches a record another task may have taken since.
        owned = list(items)
        try:
            async with self.slots[target.integration]:
                await self._send(target, owned)
        except TRANSIENT as exc:  # Redis down, auth endpoint down...: retry later, never lose the record
            log.warning("delivery to %s failed before an answer: %r", target.integration, exc)
            self._retry(target, owned, Answer(Verdict.RETRY, None), str(exc))
        except Exception as exc:  # a record is the unit of failure: what nothing foresaw dead-letters it
            log.error("delivery to %s raised %s: dead-lettering %d record(s)", target.integration,
                      type(exc).__name__, len(owned))
            for item in owned:
                item.dlq = (codes.INTERNAL_DELIVER,
                            f"deliver failed unexpectedly: {type(exc).__name__}: {str(exc)[:200]}", None, b"")
                self._spawn(self._dead_letter(item))

    async def _send(self, target: HttpTarget, owned: list[Item]) -> None:
        """Send ``owned`` unless delivered already or not sendable now; ``owned`` is narrowed in
        place to what this task still holds (see ``_deliver``)."""

        def sendable() -> list[Item]:
            owned[:] = self._sendable(owned)
            return owned

        items = list(owned)
        done = await self.delivered_keys.seen([i.delivered_key for i in items])
        owned[:] = fresh = [i for i, d in zip(items, done, strict=True) if not d]
        for item, d in zip(items, done, strict=True):
            if d:
                self._finish(item, "already_delivered")
        while (fresh := sendable()) and (held := self._held_for(target, fresh[0].tenant)) > 0:
            await asyncio.sleep(min(held, self.options.state_interval_s))
        if target.rate_limit is not None:
            while (fresh := sendable()) and (
                    wait := await self.limiter.wait_ms(target.destination, fresh[0].tenant, target.rate_limit)) > 0:
                await asyncio.sleep(min(wait / 1000, self.options.state_interval_s))
        # Stop means stop: a pause, needs_reconnect or revocation seen while this task waited
        # (for a slot, the rate limit, Redis) holds its records; they are sent after a resume.
        fresh = sendable()
        if not fresh:
            return
        tps = [i.tp for i in fresh]
        self.in_flight.update(tps)
        try:
            await self._request_and_apply(target, fresh)
        finally:
            self.in_flight.subtract(tps)

    def _hold_key(self, target: HttpTarget, tenant: str) -> str:
        per_tenant = target.rate_limit is not None and target.rate_limit.scope == "tenant"
        return hold_key(self.prefix, target.destination, tenant if per_tenant else None)

    async def _hold(self, target: HttpTarget, tenant: str, seconds: float) -> None:
        """The partner said "not before": hold every request of the destination (or of this tenant's
        share of it), here at once and on every replica through Redis (best effort)."""
        key = self._hold_key(target, tenant)
        until = time.time() + min(seconds, HOLD_CAP_S)
        self.holds[key] = max(self.holds.get(key, 0.0), until)
        try:
            await self.limiter.hold(key, int(until * 1000))
        except RETRYABLE_REDIS as exc:
            log.info("hold of %s not shared: %s", target.destination, exc)

    def _held_for(self, target: HttpTarget, tenant: str) -> float:
        """Seconds until requests to ``target`` may go again (0: now)."""
        return max(0.0, self.holds.get(self._hold_key(target, tenant), 0.0) - time.time()) if self.holds else 0.0

    def _sendable(self, items: list[Item]) -> list[Item]:
        """The items that may be sent now; the others go back to their lane heads, unsent."""
        name = items[0].integration if items else ""
        if name in self.active and not self.revoking:
            return items
        out = []
        for item in items:
            if name in self.active and item.tp not in self.revoking:
                out.append(item)
            else:
                self.lanes.release(item)
        return out

    async def _request_and_apply(self, target: HttpTarget, fresh: list[Item]) -> None:
        single = target.max_records == 1
        ikeys = [i.idempotency_key for i in fresh]
        body = fresh[0].json if single else join_body([i.json for i in fresh], target.batch_key)
        request_key = ikeys[0] if single else batch_idempotency_key(ikeys)
        headers = {"Content-Type": "application/json", "Idempotency-Key": request_key, **target.headers}
        span = None
        incoming = fresh[0].traceparent
        if incoming and sampled(incoming):
            span, headers[h.TRACEPARENT] = start_child(
                _tracer, f"deliver {target.integration}", incoming, kind=SpanKind.CLIENT,
                attributes={"router.integration": target.integration, "router.records": len(fresh),
                            "http.request.method": target.method, "router.tenant": fresh[0].tenant})
        elif incoming:
            headers[h.TRACEPARENT] = incoming
        auth = self.auth[target.integration]
        for item in fresh:
            item.attempts += 1
        try:
            seen = auth.version
            answer, resp_body = await self._request(target, auth, body, headers, request_key, len(fresh))
            if answer.verdict is Verdict.UNAUTHORIZED and not fresh[0].refreshed_auth:
                try:  # one fetch for every request refused with the same token; TokenUnavailable: retried
                    refreshed = await auth.refresh(self.session, seen)
                except AuthFailed:  # the token endpoint refused the credentials: the 401 stands
                    refreshed = False
                if refreshed:  # a 401 with the new token is final: reconnect
                    for item in fresh:
                        item.refreshed_auth = True
                    answer, resp_body = await self._request(target, auth, body, headers, request_key, len(fresh))
        finally:
            if span is not None:
                span.set_attribute("http.response.status_code", answer.status or 0)
                span.end()
        self.outcomes.add(f"attempt_{(answer.status or 0) // 100}xx", fresh[0].tenant, target.integration)
        await self._apply(target, fresh, answer, resp_body)

    async def _request(self, target: HttpTarget, auth: Auth, body: bytes, headers: dict[str, str], msg_id: str,
                       n: int) -> tuple[Answer, bytes]:
        started = time.perf_counter()
        try:
            extra = await auth.headers(self.session, body, msg_id)
            async with self.session.request(target.method, target.url, data=body, headers={**headers, **extra},
                                            timeout=aiohttp.ClientTimeout(total=target.timeout_s)) as resp:
                content = await resp.content.read(64 * 1024)
                answer = interpret(resp.status, {k.lower(): v for k, v in resp.headers.items()}, content, n,
                                   time.time())
                delivery_request_seconds.record(time.perf_counter() - started, {
                    "integration": target.integration, "destination": target.destination,
                    "status_class": f"{resp.status // 100}xx"})
                return answer, content
        except TokenUnavailable as exc:  # passes by itself: retried with a backoff, never a reconnect
            return Answer(Verdict.RETRY, None), str(exc).encode()
        except AuthFailed as exc:
            return Answer(Verdict.UNAUTHORIZED, None), str(exc).encode()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Answer(Verdict.RETRY, None), f"{type(exc).__name__}: {exc}".encode()

    async def _apply(self, target: HttpTarget, items: list[Item], answer: Answer, body: bytes) -> None:
        verdict = answer.verdict
        if verdict is Verdict.DELIVERED:
            await self._delivered(target, items)
        elif verdict is Verdict.PARTIAL:
            # Each record by its own result: its status, its Retry-After, its body in its DLQ entry.
            # The delivered ones first: if writing their keys fails, every record is still this
            # task's to retry (none was handed back to the lanes yet).
            results = [(item, result, classify_status(result.status)) for item, result in
                       zip(items, answer.results, strict=True)]
            await self._delivered(target, [item for item, _, own in results if own is Verdict.DELIVERED])
            for item, result, own in results:
                if own is not Verdict.DELIVERED:
                    after = result.retry_after_s if result.retry_after_s is not None else answer.retry_after_s
                    await self._apply(target, [item], Answer(own, result.status, after), result.body)
        elif verdict is Verdict.RETRY:
            if answer.status == 429 and target.rate_limit is not None:
                await self.limiter.penalize(target.destination, items[0].tenant, target.rate_limit)
            hold_s = answer.retry_after_s
            if hold_s is None and answer.status == 503:  # unavailable without a time: back off the whole destination
                hold_s = backoff_s(items[0].attempts, target.retry.base_s, target.retry.cap_s)
            if hold_s:
                await self._hold(target, items[0].tenant, hold_s)
            self._retry(target, items, answer, body.decode("utf-8", "replace"))
        elif verdict is Verdict.UNAUTHORIZED or (answer.status == 403 and target.on_forbidden == "reconnect"):
            # A 403 is a missing permission, the same for every record: hold the integration, not
            # dead-letter the backlog one by one (``on_forbidden: dlq`` for per-record refusals).
            await self._needs_reconnect(target, items, body, answer.status)
        else:
            for item in items:
                item.dlq = (codes.DELIVER_HTTP_4XX, f"{target.method} {target.url} answered {answer.status}",
                            answer.status, body[:RESPONSE_BODY_LIMIT])
                await self._dead_letter(item)

    async def _delivered(self, target: HttpTarget, items: list[Item]) -> None:
        if not items:
            return
        ttl = int(max(DELIVERED_TTL_MIN_S, 2 * target.dedupe_ttl_s))
        await self.delivered_keys.remember([i.delivered_key for i in items], ttl)
        for item in items:
            self._finish(item, "delivered")

    def _retry(self, target: HttpTarget, items: list[Item], answer: Answer, why: str) -> None:
        for item in items:
            delay = answer.retry_after_s
            if delay is None:
                delay = backoff_s(item.attempts, target.retry.base_s, target.retry.cap_s)
            if time.time() + delay - item.born_s > target.retry.max_age_s:
                message = (f"still failing after {item.attempts} attempt(s) over max_age "
                           f"{target.retry.max_age_s:.0f}s: {why}")[:500]
                item.dlq = (codes.DELIVER_RETRIES_EXHAUSTED, message, answer.status, why.encode()[:RESPONSE_BODY_LIMIT])
                delay = 0.0  # written to the DLQ at the next pass
            item.refreshed_auth = False  # the credentials were not what failed
            self.lanes.retry(item, now() + delay)

    async def _needs_reconnect(self, target: HttpTarget, items: list[Item], body: bytes, status: int | None = None
                               ) -> None:
        """Credentials refused (after a refresh) or lacking a permission (403): hold the
        integration until a person reconnects it; its records wait, nothing is lost."""
        # The partner's answer may echo the credential it refused: masked before it is stored or logged.
        answer = redact_text(body[:400].decode("utf-8", "replace"), self.redact_fields)[:200]
        reason = (f"the partner answered 403: the credentials lack a permission: {answer}" if status == 403
                  else f"the partner refused credentials after a refresh: {answer}")
        await self.redis.set(state_key(self.prefix, target.integration), orjson.dumps(
            {"state": "needs_reconnect", "reason": reason, "since_ms": int(time.time() * 1000)}))
        self.active.discard(target.integration)
        log.error("integration %s needs reconnecting: %s", target.integration, reason)
        for item in items:
            item.refreshed_auth = False
            self.lanes.release(item)

    async def _dead_letter(self, item: Item) -> None:
        """Write ``item`` to its topic's DLQ, wait for the ack, then finish it; on failure retry later."""
        code, message, status, body = item.dlq or (codes.DELIVER_UNKNOWN, "", None, b"")
        headers: list[tuple[str, str | bytes | None]] = [*deadletters.error_headers(
            item.headers, topic=item.topic, partition=item.partition, offset=item.offset,
            timestamp_ms=int(item.born_s * 1000), code=code, message=message, stage="deliver",
            group=self.options.group, integration=None, now_ms=int(time.time() * 1000), attempts=item.attempts,
            http_status=status, response_body=body)]
        # One DLQ copy per record: a redelivery after a crash before the commit finds it recorded.
        letter = deadletters.slot(self.prefix, self.options.group,
                                  DeadLetter(item.topic, item.partition, item.offset, item.integration))
        try:
            [already] = await deadletters.written_async(self.redis, [letter])
        except RETRYABLE_REDIS as exc:
            log.warning("DLQ ledger unavailable, retrying the dead letter later: %s", exc)
            self.lanes.retry(item, now() + 1.0)
            return
        if already:
            self.outcomes.add("dlq_already_written", item.tenant, item.integration, code)
            self._finish(item, None)
            return
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[KafkaError | None] = loop.create_future()

        def settle(err: KafkaError | None) -> None:
            if not acked.done():
                acked.set_result(err)

        def report(err: KafkaError | None, _msg: Message) -> None:
            loop.call_soon_threadsafe(settle, err)

        try:
            await self._p(lambda: self.producer.produce(dlq_topic(item.topic), key=item.key, value=item.value,
                                                        headers=headers, on_delivery=report))
            err = await asyncio.wait_for(acked, 30)
        except Exception as exc:
            err = KafkaError(KafkaError._FAIL, str(exc))
        if err is not None:
            log.warning("DLQ write for %s failed, retrying: %s", item.topic, err)
            self.lanes.retry(item, now() + 1.0)
            return
        try:
            await deadletters.record_async(self.redis, [letter], [code])
        except RETRYABLE_REDIS as exc:  # written once; only a crash before the commit could repeat it
            log.warning("DLQ ledger not updated for %s[%d]@%d: %s", item.topic, item.partition, item.offset, exc)
        self.outcomes.add("dlq", item.tenant, item.integration, code)
        sample = to_json(item.record) if item.record is not None else item.value
        self.health.fail(item.integration, item.tenant, code, message, sample)
        self._finish(item, None)

    def _finish(self, item: Item, outcome: str | None) -> None:
        if outcome is not None:
            self.outcomes.add(outcome, item.tenant, item.integration)
        if outcome == "delivered":
            self.health.ok(item.integration, item.tenant)
            if item.received_at_ms is not None:
                end_to_end_seconds.record(max(0.0, time.time() - item.received_at_ms / 1000),
                                          {"integration": item.integration, "tenant": item.tenant})
        self.lanes.finish(item)


@dataclass
class _Revocation:
    """A revocation handed from the Kafka thread to the loop and back (``_on_revoke``)."""

    tps: set[TP]
    done: threading.Event = field(default_factory=threading.Event)
    positions: dict[TP, int] = field(default_factory=dict)


def _passes(exc: BaseException) -> bool:
    """Does a failure to fetch a schema pass by itself (registry down, 5xx, timeout), unlike a
    404 (no such id) or a schema that does not parse?"""
    if isinstance(exc, ValueError):
        return False
    status = getattr(exc, "http_status_code", None)
    return status is None or status == -1 or status >= 500 or status == 429


def _commit_guarded(consumer: Consumer, offsets: list[TopicPartition]) -> bool:
    """Commit synchronously; a failure is logged, never raised: what was not committed is redone
    by the partition's owner from the last commit (delivered keys keep it from being sent twice).
    Returns whether the commit went through."""
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
    except KafkaException as exc:
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        rebalance = err is not None and err.code() in REBALANCE_ERRORS
        log.log(logging.INFO if rebalance else logging.WARNING, "commit failed%s; the records will be redelivered: %s",
                " during a rebalance" if rebalance else "", exc)
        return False
    return True

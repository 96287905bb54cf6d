"""The delivery worker: delivery.<destination> topics → partner APIs (DESIGN §4, §5).

An asyncio loop owns everything that waits: HTTP (aiohttp, connection reuse), Redis (rate limits,
delivered keys, integration state) and Kafka through ``KafkaBridge``. Records wait in per-key
lanes (``lanes.py``); a lane's head is sent, retried with backoff or Retry-After, or
dead-lettered; offsets are committed only for each partition's contiguous prefix of finished
records.

The modules, by what they do:
- ``worker``: this loop (consume, accept, refresh states, dispatch, commit, flow control) and
  how a record finishes;
- ``kafka_bridge``: the consumer and producer, rebalances, guarded commits, flow control;
- ``intake``: messages in, decoded into lane items; ``send``: one request; ``answers``: what the
  partner's answer does; ``deadletter``: one record's DLQ write.

Threads, and what each touches:
- the event loop thread: every ``DeliverWorker`` attribute (lanes, ``active``, ``revoking``,
  ``in_flight``, ``holds``, tasks, outcomes, health), HTTP and Redis; every module above except
  the parts of ``kafka_bridge`` named below runs here;
- the ``kafka`` thread: the consumer (consume, commit, pause, resume, close, the group check), the
  schema registry fetches, and the rebalance callbacks, which run inside ``consume()``. They
  reach the loop's state only through ``call_soon_threadsafe``, apart from ``KafkaBridge.revoked``
  (filled inside ``consume()``, drained by the loop after it returns) and the ``_Revocation``
  handoff (a ``threading.Event``);
- the ``kafka-producer`` thread: produce, poll and flush (DLQ writes); delivery reports run
  there and only resolve futures on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumers.deliver import intake
from consumers.deliver.auth import Auth, build_auth
from consumers.deliver.config import HttpTarget
from consumers.deliver.deadletter import dead_letter
from consumers.deliver.delivered import DeliveredKeys
from consumers.deliver.failures import DEAD_LETTERS, REQUESTS, RETRYABLE_REDIS, STATES
from consumers.deliver.kafka_bridge import KafkaBridge
from consumers.deliver.lanes import TP, Item, Lanes, batches, now
from consumers.deliver.payload import envelope
from consumers.deliver.ratelimit import SharedRateLimiter
from consumers.deliver.send import deliver
from consumers.deliver.tenancy import Tenancy
from router import codec, groupwatch, health, redisconn
from router.controls import parse, state_key
from router.errors import ConfigError
from router.groupwatch import GroupWatch, Throttle
from router.health import HealthBatch, HealthWriter
from router.outcomes import Outcomes, end_to_end_seconds
from router.progress import REDIS, Progress
from router.redact import fields_from_env
from router.settings import Settings
from router.telemetry import Heartbeat, Verdict, worker_verdict

log = logging.getLogger("router.deliver")


@dataclass
class DeliverOptions:
    """How one delivery worker runs (the ``router deliver`` flags)."""

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
                 options: DeliverOptions | None = None, tenancy: Tenancy | None = None) -> None:
        """Build the worker's clients and state; nothing connects before ``run``. ``tenancy``: the
        connections of integrations that deliver with each tenant's (required if any does)."""
        per_tenant = sorted(name for name, t in targets.items() if t.connection is not None)
        if per_tenant and tenancy is None:
            raise ConfigError(f"{', '.join(per_tenant)} deliver(s) with each tenant's connection: set "
                              "ROUTER_ENCRYPTION_KEY (docs/connections.md) so that this worker can read them")
        self.tenancy = tenancy
        self.settings = settings
        self.targets = targets
        self.registry = registry
        self.options = options or DeliverOptions()
        self.prefix = settings.redis_key_prefix
        self.outcomes = Outcomes()
        self.lanes = Lanes()
        self.active: set[str] = set(targets)
        self.revoking: set[TP] = set()  # partitions going away: no request starts for their records
        self.in_flight: Counter[TP] = Counter()  # records in an HTTP request, by partition
        self.codec = codec.Codec(codec.registry_fetch(registry))  # schemas by id, each fetched once
        self.watch = groupwatch.register(GroupWatch(self.options.group, settings.session_timeout_ms))
        self.kafka = KafkaBridge(self)
        self.redis = redisconn.connect_async(settings.redis_url or "", socket_timeout=5)
        if tenancy is not None:
            tenancy.redis, tenancy.prefix = self.redis, self.prefix
        self.limiter = SharedRateLimiter(self.redis, self.prefix)
        self.delivered_keys = DeliveredKeys(self.redis, self.prefix)
        self.auth: dict[str, Auth] = {name: build_auth(t.auth) for name, t in targets.items() if t.connection is None}
        self.slots = {name: asyncio.Semaphore(self.options.concurrency) for name in targets}
        self.tasks: set[asyncio.Task[None]] = set()
        self.heartbeat = Heartbeat()
        self.progress = Progress("deliver", settings.failing_after_s)
        self._row_due = Throttle(health.WORKER_ROW_EVERY_S)
        self.row_id = health.worker_field("deliver", groupwatch.member_name())
        self.health = HealthBatch()
        self.health_writer = HealthWriter(self.prefix)
        self.redact_fields = fields_from_env(os.environ)
        self._state_failures = 0
        self.holds: dict[str, float] = {}  # hold key -> epoch seconds before which nothing is sent
        self._watch_due = Throttle()
        self._labels: dict[tuple[str, str], dict[str, str]] = {}

    def verdict(self) -> Verdict:
        """``/readyz`` and ``/healthz``: the loop is turning, its group is not stuck, and its Redis and
        broker work has not been failing for ``ROUTER_FAILING_AFTER_S`` (``router.progress``)."""
        return worker_verdict(self.heartbeat, self.watch.stuck, self.progress)

    def healthy(self) -> bool:
        """Is :meth:`verdict` a 200?"""
        return self.verdict().ok

    # ---- the loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop``; then wait for requests in flight, commit what finished, leave."""
        topics = sorted({f"delivery.{t.destination}" for t in self.targets.values()})
        kafka = self.kafka
        await kafka.subscribe(topics)
        poll_producer = asyncio.create_task(kafka.poll_producer(stop))
        connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=30)
        last_commit = next_state = 0.0
        async with aiohttp.ClientSession(connector=connector) as self.session:
            try:
                while not stop.is_set():
                    self.heartbeat.beat()
                    busy = self.lanes.size() > 0
                    messages = await kafka.consume_call(kafka.consumer.consume, 500, 0.05 if busy else 0.2)
                    if self._watch_due(time.monotonic()):
                        changed = await kafka.consume_call(kafka.observe_group, topics)
                        await groupwatch.report_async(self.redis, self.prefix, self.watch, changed)
                    kafka.drop_revoked()
                    if not self.lanes.size():  # nothing left to retry: no request or dead letter is failing
                        self.progress.settled(REQUESTS)
                        self.progress.settled(DEAD_LETTERS)
                    if self._row_due(time.monotonic()):
                        await self._write_row()
                    await intake.accept(self, messages)
                    if time.monotonic() >= next_state:
                        next_state = time.monotonic() + await self._refresh_states()
                    self._dispatch()
                    if time.monotonic() - last_commit >= self.options.commit_interval_s:
                        await self._commit()
                        last_commit = time.monotonic()
                    await kafka.flow_control()
            finally:
                if self.tasks:
                    await asyncio.wait(self.tasks, timeout=30)
                await self._commit()
                stop.set()
                await poll_producer
                await kafka.close()
                try:
                    await self.redis.hdel(health.workers_key(self.prefix), self.row_id)
                except RETRYABLE_REDIS as exc:
                    log.info("worker row not removed: %s", exc)
                await self.redis.aclose()
                kafka.shutdown()

    async def _commit(self) -> None:
        """Commit each partition's finished prefix (guarded), then write health rows (best effort)."""
        positions = self.lanes.commit_positions()
        if positions:
            await self.kafka.commit(positions)
            self.outcomes.commit_batch("deliver")
        if self.health.rows:
            try:  # best effort: health is for people, never a reason to hold a commit
                pipe = self.redis.pipeline(transaction=False)
                self.health_writer.queue(pipe, self.health)
                await pipe.execute()
            except Exception as exc:
                log.warning("health not recorded: %s", exc)
                self.health.clear()

    async def _write_row(self) -> None:
        """This worker's row on the health page (best effort; skipped while Redis is what fails: it
        could not be written)."""
        status = self.progress.status()
        if status.reason == REDIS:
            return
        entry = health.worker_entry("deliver", self.options.group, groupwatch.member_name(), status)
        await health.write_worker_async(self.redis, self.prefix, self.row_id, entry)

    async def _refresh_states(self) -> float:
        """Read every integration's state; return the seconds until the next read: the interval,
        or a doubling backoff (to 15 s) while Redis does not answer — the last states stay."""
        names = list(self.targets)
        holds = sorted({self.limiter.hold_key(t.destination, None) for t in self.targets.values()})
        try:
            raw = await redisconn.mget_async(self.redis, [state_key(self.prefix, n) for n in names])
            for key, until_ms in zip(holds, await self.limiter.holds(holds), strict=True):
                if until_ms:
                    self.holds[key] = max(self.holds.get(key, 0.0), until_ms / 1000)
        except RETRYABLE_REDIS as exc:
            self.progress.failed(REDIS, STATES)
            self._state_failures += 1
            wait = min(self.options.state_interval_s * 2 ** self._state_failures, 15.0)
            log.warning("integration states unavailable (%d in a row), next try in %.0fs: %s",
                        self._state_failures, wait, exc)
            return wait
        self._state_failures = 0
        self.progress.succeeded(STATES)
        self.active = {n for n, v in zip(names, raw, strict=True) if parse(n, v).state == "active"}
        if self.tenancy is not None:
            self.active |= self.tenancy.active_scopes(self.targets, self.active, self.lanes.scopes())
            for connection, reason in self.tenancy.unusable():
                self.spawn(self.tenancy.needs_reconnect(connection.integration, connection.tenant,
                                                        f"the integration cannot use this connection: {reason}", None))
        now_s = time.time()
        self.holds = {k: v for k, v in self.holds.items() if v > now_s}
        return self.options.state_interval_s

    # ---- dispatch ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start a task for every ready lane head: its dead letter, its re-decode, or its batch's request."""
        ready = self.lanes.ready(now(), self.active)
        by_scope: dict[str, list[Item]] = {}
        for item in ready:
            if item.dlq is None and item.scope and self.tenancy is not None and \
                    (why := self.tenancy.dead_letter(self.targets[item.integration], item.tenant)) is not None:
                item.dlq = (why[0], why[1], None, b"")
            if item.dlq is not None:
                self.lanes.start(item)
                self.spawn(dead_letter(self, item))
                continue
            if item.undecoded:
                self.lanes.start(item)
                self.spawn(intake.redecode(self, item))
                continue
            by_scope.setdefault(item.scope or item.integration, []).append(item)
        for items in by_scope.values():
            target = self.targets[items[0].integration]
            head, tail = envelope(target.batch_key)
            for batch in batches(items, target.max_records, target.max_bytes, len(head) + len(tail)):
                for item in batch:
                    self.lanes.start(item)
                self.spawn(deliver(self, target, batch))

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` as a task the loop waits for at the end; its failure is logged."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """Forget a finished task; log what it raised."""
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery task failed: %r", task.exception())

    def finish(self, item: Item, outcome: str | None) -> None:
        """``item`` is done (delivered, already delivered, dead-lettered): count it, free its lane."""
        if outcome is not None:
            self.outcomes.add(outcome, item.tenant, item.integration)
        if outcome == "delivered":
            self.health.ok(item.integration, item.tenant)
            if item.received_at_ms is not None:
                end_to_end_seconds.record(max(0.0, time.time() - item.received_at_ms / 1000),
                                          {"integration": item.integration, "tenant": item.tenant})
        self.lanes.finish(item)

    def finish_delivered(self, items: list[Item]) -> None:
        """Records the partner accepted are done: as ``finish(item, "delivered")`` for each, with the
        counters and health tallied once per (integration, tenant) of the batch, not per record."""
        tally: Counter[tuple[str, str]] = Counter()
        for item in items:
            tally[(item.integration, item.tenant)] += 1
        for (integration, tenant), n in tally.items():
            self.outcomes.add("delivered", tenant, integration, n=n)
            self.health.ok(integration, tenant, n)
        now_s = time.time()
        for item in items:
            if item.received_at_ms is not None:
                end_to_end_seconds.record(max(0.0, now_s - item.received_at_ms / 1000),
                                          self._latency_labels(item.integration, item.tenant))
            self.lanes.finish(item)

    def _latency_labels(self, integration: str, tenant: str) -> dict[str, str]:
        """The end-to-end histogram's attributes, one dict per (integration, tenant), never changed."""
        labels = self._labels.get((integration, tenant))
        if labels is None:
            labels = self._labels[(integration, tenant)] = {"integration": integration, "tenant": tenant}
        return labels

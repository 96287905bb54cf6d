"""The delivery worker's Kafka side: its consumer and producer, the two threads that touch them,
rebalances, guarded commits and flow control.

Threads (librdkafka objects are never touched from the event loop):
- the ``kafka`` thread runs every consumer call (subscribe, consume, commit, pause, resume, close,
  the group check) and the schema fetches; the rebalance callbacks run on it inside ``consume()``,
  while the event loop is free. They touch the loop's state only through ``call_soon_threadsafe``,
  except ``revoked``, which the loop drains after the ``consume()`` that filled it returned;
- the ``kafka-producer`` thread runs produce, poll and flush, so a consumer call never waits
  behind ``producer.poll``. Delivery reports run on it and only resolve futures on the loop;
- the event loop owns ``paused_tps`` and calls into both threads through ``consume_call`` and
  ``produce_call``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from consumers.deliver.lanes import TP
from router.groupwatch import group_progress
from router.kafka import member_config, producer_config

if TYPE_CHECKING:
    from consumers.deliver.worker import DeliverWorker

log = logging.getLogger("router.deliver")
T = TypeVar("T")

# Commit failures a rebalance causes: the partitions' next owner resumes from the last commit.
REBALANCE_ERRORS = frozenset({KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS,
                              KafkaError.UNKNOWN_MEMBER_ID, KafkaError._NO_OFFSET, KafkaError._STATE})


class KafkaBridge:
    """The worker's consumer and producer, each on its own thread, and what rebalances do."""

    def __init__(self, worker: DeliverWorker) -> None:
        """Create the clients and their threads; nothing connects before ``subscribe``."""
        self.worker = worker
        self._kafka = ThreadPoolExecutor(1, thread_name_prefix="kafka")  # every consumer call
        self._producing = ThreadPoolExecutor(1, thread_name_prefix="kafka-producer")  # produce, poll, flush
        self.consumer = Consumer(member_config(worker.settings, worker.options.group))
        self.producer = Producer(producer_config(worker.settings))
        self.loop: asyncio.AbstractEventLoop | None = None
        self.revoked: list[TP] = []  # from the Kafka thread: partitions to drop at the next pass
        self.paused_tps: set[TP] = set()

    async def consume_call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a consumer call on the Kafka thread (librdkafka's consumer is touched from there only)."""
        return await asyncio.get_running_loop().run_in_executor(self._kafka, fn, *args)

    async def produce_call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a producer call on its own thread, so consumer calls never wait behind a poll."""
        return await asyncio.get_running_loop().run_in_executor(self._producing, fn, *args)

    async def subscribe(self, topics: list[str]) -> None:
        """Join the group for ``topics`` with this bridge's rebalance callbacks."""
        self.loop = asyncio.get_running_loop()
        await self.consume_call(lambda: self.consumer.subscribe(topics, on_assign=self._on_assign,
                                                                on_revoke=self._on_revoke, on_lost=self._on_lost))

    def observe_group(self, topics: list[str]) -> bool:
        """On the Kafka thread: the stuck-group check (``router.groupwatch``)."""
        watch = self.worker.watch
        return watch.observe(time.monotonic(), bool(self.consumer.assignment()),
                             lambda: group_progress(self.consumer, topics))

    async def poll_producer(self, stop: asyncio.Event) -> None:
        """Serve the producer's delivery reports (DLQ writes) until ``stop``; they only resolve futures."""
        while not stop.is_set():
            await self.produce_call(self.producer.poll, 0.1)

    async def close(self) -> None:
        """Flush the producer (DLQ writes), then leave the group."""
        await self.produce_call(self.producer.flush, 10)
        await self.consume_call(self.consumer.close)

    def shutdown(self) -> None:
        """Stop both threads once their last call returned."""
        self._kafka.shutdown(wait=True)
        self._producing.shutdown(wait=True)

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
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._revocation_started, handoff)
            if not handoff.done.wait(self.worker.options.revoke_wait_s + 5):
                log.warning("revocation of %d partition(s) did not drain in time", len(tps))
        if handoff.positions:
            commit_guarded(consumer, [TopicPartition(t, p, o) for (t, p), o in handoff.positions.items()])
        self.revoked.extend(tps)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions already belong to someone else: stop their requests, commit nothing, drop them."""
        tps = {(p.topic, p.partition) for p in partitions}
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.worker.revoking.update, tps)
        self.revoked.extend(tps)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions (maybe given back) are ours: their records may be sent again."""
        tps = {(p.topic, p.partition) for p in partitions}
        if tps and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.worker.revoking.difference_update, tps)

    def _revocation_started(self, handoff: _Revocation) -> None:
        """On the loop: stop starting requests for the revoked partitions, then drain them."""
        self.worker.revoking |= handoff.tps
        self.worker.spawn(self._drain_revoked(handoff))

    async def _drain_revoked(self, handoff: _Revocation) -> None:
        """Wait (bounded) for the revoked partitions' requests in flight; hand back what may be committed."""
        worker = self.worker
        deadline = time.monotonic() + worker.options.revoke_wait_s
        try:
            while any(worker.in_flight[tp] for tp in handoff.tps) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            handoff.positions = worker.lanes.commit_positions(only=handoff.tps)
        finally:
            handoff.done.set()

    def drop_revoked(self) -> None:
        """On the loop, after ``consume()``: forget the records of partitions revoked or lost in it."""
        if self.revoked:
            tps = set(self.revoked)
            self.revoked.clear()
            self.worker.lanes.drop_partitions(tps)
            self.paused_tps -= tps
            for tp in tps:
                self.worker.in_flight.pop(tp, None)

    async def commit(self, positions: dict[TP, int]) -> None:
        """Commit ``positions`` (each partition's next offset) on the Kafka thread, guarded."""
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
        await self.consume_call(commit_guarded, self.consumer, offsets)

    async def flow_control(self) -> None:
        """Pause a partition holding too many unfinished records; resume it when it drains."""
        limit = self.worker.options.max_backlog
        for tp, track in list(self.worker.lanes.tracks.items()):
            backlog = track.backlog()
            try:
                if backlog > limit and tp not in self.paused_tps:
                    await self.consume_call(self.consumer.pause, [TopicPartition(*tp)])
                    self.paused_tps.add(tp)
                elif backlog < limit // 2 and tp in self.paused_tps:
                    await self.consume_call(self.consumer.resume, [TopicPartition(*tp)])
                    self.paused_tps.discard(tp)
            except KafkaException as exc:  # revoked meanwhile: dropped at the next pass
                log.info("flow control skipped %s[%d]: %s", tp[0], tp[1], exc)


@dataclass
class _Revocation:
    """A revocation handed from the Kafka thread to the loop and back (``_on_revoke``)."""

    tps: set[TP]
    done: threading.Event = field(default_factory=threading.Event)
    positions: dict[TP, int] = field(default_factory=dict)


def commit_guarded(consumer: Consumer, offsets: list[TopicPartition]) -> bool:
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

"""Durable produce for asyncio: a record counts only once the broker has acknowledged it.

One idempotent, ``acks=all`` confluent-kafka ``Producer`` per process, polled by a task on
the event loop (``poll(0)``, never blocking): delivery callbacks therefore run on the loop's
own thread, where they settle the request's future directly — no thread hand-off, no GIL
ping-pong with a polling thread (measured: that hand-off cost ~5 ms at p50 under load). The
task polls every millisecond while records are in flight and sleeps when none are.

``send`` waits for its future up to a deadline: no ack in time, or a full local queue, is an
:class:`Unavailable` outcome (the gateway answers 503 + Retry-After), never an exception.
A record whose request got 503 may still be delivered later (librdkafka retries until
``message.timeout.ms``): the sender retries and the route worker's dedupe by event id absorbs
the duplicate. What can never happen is a 202 without an ack.

A record the producer or the broker refuses for its size is :class:`TooLarge` (413): sending it
again would not help. The gateway checks the size itself first (``limits.record_size``); this
covers a topic whose ``max.message.bytes`` is lower than the gateway was told.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from router.kafka import producer_config
from router.settings import Settings

log = logging.getLogger("router.gateway.produce")

POLL_INTERVAL_S = 0.001


@dataclass(frozen=True, slots=True)
class Delivered:
    """The broker has the record at ``topic``/``partition``/``offset``."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Unavailable:
    """The record was not acknowledged in time (or could not be queued): answer 503."""

    reason: str


@dataclass(frozen=True, slots=True)
class TooLarge:
    """The producer or the broker refused the record for its size: answer 413, a retry would fail the same."""

    reason: str


Outcome = Delivered | Unavailable | TooLarge

# librdkafka's local check, and the broker's answers for a record (batch) over max.message.bytes.
_SIZE_ERRORS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})
# The producer's own limit sits above the gateway's record limit, so the gateway's check (a 413 that
# names the limit) is what refuses, and the producer never sees a record the gateway meant to refuse.
_PRODUCER_HEADROOM_BYTES = 64 * 1024


class DurableProducer:
    """An idempotent producer whose ``send`` resolves only on the broker's ack, or gives up at a deadline."""

    def __init__(self, settings: Settings, *, deadline_s: float, linger_ms: int = 5,
                 queue_max_messages: int = 100_000, max_record_bytes: int = 1024 * 1024) -> None:
        self.deadline_s = deadline_s
        # A record not acked within this fails for good; its request was answered 503 long before.
        timeout_ms = max(int(deadline_s * 1000) * 6, 30_000)
        self._conf = producer_config(settings, **{
            "linger.ms": linger_ms,
            "message.timeout.ms": timeout_ms,
            "queue.buffering.max.messages": queue_max_messages,
        })
        self._conf["message.max.bytes"] = max(int(self._conf.get("message.max.bytes", 0)),
                                              max_record_bytes + _PRODUCER_HEADROOM_BYTES)
        self._producer: Producer | None = None
        # (deadline, future) in send order: every request has the same deadline, so this FIFO is
        # also deadline order and one check of its head replaces a timer per request.
        self._pending: deque[tuple[float, asyncio.Future[Outcome]]] = deque()
        self._work = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            raise RuntimeError("DurableProducer.start() was not called")
        return self._producer

    def start(self) -> None:
        """Create the producer and its polling task (call from the running event loop)."""
        self._producer = Producer(self._conf)
        self._poller = asyncio.get_running_loop().create_task(self._poll_loop(), name="gateway-producer-poll")

    async def stop(self, flush_timeout_s: float = 10.0) -> int:
        """Deliver what is queued (callbacks still settle futures), stop polling; return records left undelivered."""
        producer = self._producer
        if producer is None:
            return 0
        end = time.monotonic() + flush_timeout_s
        # An async flush: poll from the loop until the queue is empty, so callbacks stay on this thread.
        while len(producer) > 0 and time.monotonic() < end:
            producer.poll(0)
            await asyncio.sleep(0.01)
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        left = len(producer)
        if left:
            log.error("producer stopped with %d record(s) not acknowledged after %.0fs", left, flush_timeout_s)
        self._expire(float("inf"))
        self._producer = None
        return left

    async def _poll_loop(self) -> None:
        producer = self.producer
        while True:
            if not self._pending:
                self._work.clear()
                await self._work.wait()
            producer.poll(0)
            self._expire(asyncio.get_running_loop().time())
            await asyncio.sleep(POLL_INTERVAL_S)

    def _expire(self, now: float) -> None:
        """Drop settled futures from the head; settle overdue ones as Unavailable."""
        pending = self._pending
        while pending and (pending[0][1].done() or pending[0][0] <= now):
            _, future = pending.popleft()
            if not future.done():
                future.set_result(Unavailable(f"the broker did not acknowledge within {self.deadline_s:g}s"))

    @staticmethod
    def _on_delivery(future: asyncio.Future[Outcome], error: KafkaError | None, message: Message) -> None:
        # Called by poll() on the loop thread, inside librdkafka: settle and return, never raise.
        try:
            if future.done():  # the deadline answered 503 already
                return
            if error is not None and error.code() in _SIZE_ERRORS:
                future.set_result(TooLarge(f"the broker refused the record for its size: {error.str()}"))
            elif error is not None:
                future.set_result(Unavailable(f"broker did not accept the record: {error.str()}"))
            else:
                future.set_result(Delivered(message.topic() or "", message.partition() or 0, message.offset() or 0))
        except Exception:  # pragma: no cover - a bug here must not unwind into librdkafka
            log.exception("delivery callback failed")

    async def send(self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
                   ) -> Outcome:
        """Produce one record; return once the broker acked it, Unavailable after the deadline, or TooLarge."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        try:
            self.producer.produce(topic, value=value, key=key, headers=list(headers),
                                  on_delivery=lambda err, msg: self._on_delivery(future, err, msg))
        except BufferError:
            return Unavailable("the producer queue is full")
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() in _SIZE_ERRORS:
                return TooLarge(f"the producer refused the record for its size: {error.str()}")
            return Unavailable(f"the producer refused the record: {error}")
        self._pending.append((loop.time() + self.deadline_s, future))
        self._work.set()
        return await future

    async def reachable(self, timeout_s: float = 1.0) -> bool:
        """Does a broker answer a metadata request within ``timeout_s``?"""
        if self._producer is None:
            return False
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, lambda: self.producer.list_topics(timeout=timeout_s))
        except KafkaException:
            return False
        return True

"""The ``_connections`` topic: read into memory and followed live, and written.

:class:`ConnectionStore` is what every process kind holds: a background thread tails the topic
from the beginning with an assign-only consumer (no group: groups form slowly on the embedded
broker, and every process needs every record) and folds each record into a dict keyed by
(tenant, integration). Lookups are one dict read, safe from any thread (the tail thread replaces
entries; it never mutates a :class:`Connection`).

"Caught up" (DESIGN §7): Tansu reports as high watermark the base offset of the last batch, not
the log end, so the store is caught up once every partition has reached the watermark taken at
start AND a consume has returned nothing for ``quiet_s`` — as ``router.dlq.read`` decides the end.
On Apache Kafka the watermark is exact and the quiet period costs ``quiet_s`` once.

A record that does not decode (not a connection, or secrets that do not decrypt with this
process's key ring) removes what was held under its key — a connection this process cannot read
is not in effect here — and is kept in :attr:`ConnectionStore.unreadable` with its code.

:class:`ConnectionWriter` produces records (idempotent producer, ``acks=all``) and waits for the
broker's acknowledgement, so a write that returned is durable.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from router import codes
from router.connections import codec
from router.connections.keyring import KeyRing
from router.connections.model import Connection, ConnectionsError
from router.kafka import COMPACTED_TOPIC_CONFIG, admin_client, consumer_config, ensure_topics, producer_config
from router.settings import Settings

log = logging.getLogger("router.connections")

DEFAULT_TOPIC = "_connections"
TOPIC_ENV = "ROUTER_CONNECTIONS_TOPIC"
QUIET_S = 0.5
IDLE_LIMIT_S = 10.0  # nothing at all for this long: caught up even short of the watermark (compacted tail)
METADATA_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 15.0

ConnectionKey = tuple[str, str]  # (tenant, integration)


@dataclass(frozen=True)
class Unreadable:
    """A record this process could not fold: where it is and why (a stable code, a message without secrets)."""

    code: str
    message: str
    offset: int


def ensure_topic(settings: Settings, topic: str = DEFAULT_TOPIC) -> None:
    """Create ``topic`` compacted, with one partition (one order of changes), if it does not exist."""
    try:
        ensure_topics(admin_client(settings), [topic], partitions=1, replication_factor=settings.replication_factor,
                      config=dict(COMPACTED_TOPIC_CONFIG), timeout=METADATA_TIMEOUT_S,
                      min_insync_replicas=settings.topic_min_insync())
    except KafkaException as exc:
        raise ConnectionsError(f"cannot create topic {topic!r}: {exc}", code=codes.CONNECTIONS_UNAVAILABLE) from None


class ConnectionStore:
    """Every connection of the topic, in memory, followed live."""

    def __init__(self, settings: Settings, ring: KeyRing, topic: str = DEFAULT_TOPIC, *, quiet_s: float = QUIET_S,
                 on_change: Callable[[ConnectionKey, Connection | None], None] | None = None) -> None:
        self.settings = settings
        self.ring = ring
        self.topic = topic
        self.quiet_s = quiet_s
        self.unreadable: dict[ConnectionKey, Unreadable] = {}
        self.failure: ConnectionsError | None = None
        self._connections: dict[ConnectionKey, Connection] = {}
        self._on_change = on_change
        self._caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None
        self.applied_offset = -1

    # -- lookups (any thread) ---------------------------------------------------------------

    def get(self, tenant: str, integration: str) -> Connection | None:
        """The connection of (tenant, integration), whatever its state, or None."""
        return self._connections.get((tenant, integration))

    def all(self) -> list[Connection]:
        """Every connection held, sorted by tenant then integration."""
        return sorted(self._connections.copy().values(), key=lambda c: (c.tenant, c.integration))

    @property
    def caught_up(self) -> bool:
        """Has the store read everything that was in the topic when it started?"""
        return self._caught_up.is_set()

    def wait_caught_up(self, timeout_s: float) -> bool:
        """Block until :attr:`caught_up` (True) or ``timeout_s`` passes (False)."""
        return self._caught_up.wait(timeout_s)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Create the topic if needed and start following it (returns at once; see :meth:`wait_caught_up`)."""
        ensure_topic(self.settings, self.topic)
        try:
            consumer = Consumer(consumer_config(self.settings, f"router.connections.{uuid.uuid4().hex}",
                                                **{"fetch.wait.max.ms": 100, "enable.partition.eof": False}))
            meta = consumer.list_topics(self.topic, timeout=METADATA_TIMEOUT_S).topics.get(self.topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise ConnectionsError(f"topic {self.topic!r} has no partitions", code=codes.CONNECTIONS_UNAVAILABLE)
            partitions = sorted(meta.partitions)
            targets = {p: max(0, consumer.get_watermark_offsets(TopicPartition(self.topic, p),
                                                                timeout=METADATA_TIMEOUT_S, cached=False)[1])
                       for p in partitions}
        except KafkaException as exc:
            raise ConnectionsError(f"cannot read topic {self.topic!r}: {exc}",
                                   code=codes.CONNECTIONS_UNAVAILABLE) from None
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
        self._consumer = consumer
        self._thread = threading.Thread(target=self._follow, args=(targets,), name=f"connections-{self.topic}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following and close the consumer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def __enter__(self) -> ConnectionStore:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the tail thread ------------------------------------------------------------------------

    def _follow(self, targets: dict[int, int]) -> None:
        consumer = self._consumer
        assert consumer is not None
        position = dict.fromkeys(targets, 0)
        last_data = time.monotonic()
        while not self._stop.is_set():
            try:
                messages = consumer.consume(500, 0.1)
            except KafkaException as exc:
                log.warning("reading %s: %s (retrying)", self.topic, exc)
                continue
            now = time.monotonic()
            if messages:
                last_data = now
            for message in messages:
                if self._apply(message):
                    position[message.partition() or 0] = (message.offset() or 0) + 1
            idle = now - last_data
            reached = all(position[p] >= targets[p] for p in targets)
            if not self._caught_up.is_set() and ((reached and idle >= self.quiet_s) or idle >= IDLE_LIMIT_S):
                log.info("connections caught up on %s: %d held", self.topic, len(self._connections))
                self._caught_up.set()

    def _apply(self, message: Message) -> bool:
        """Fold one record; False for an error event that is no record."""
        error: KafkaError | None = message.error()
        if error is not None:
            if error.fatal():
                self.failure = ConnectionsError(f"reading {self.topic} failed: {error.str()}",
                                                code=codes.CONNECTIONS_UNAVAILABLE)
                log.error("%s", self.failure)
            return False
        offset = message.offset() or 0
        try:
            tenant, integration, connection = codec.decode(message.key(), message.value(), self.ring)
        except ConnectionsError as exc:
            self._unreadable(message.key(), exc, offset)
            return True
        key = (tenant, integration)
        self.unreadable.pop(key, None)
        if connection is None:
            self._connections.pop(key, None)
        else:
            self._connections[key] = connection
        self.applied_offset = max(self.applied_offset, offset)
        if self._on_change is not None:
            self._on_change(key, connection)
        return True

    def _unreadable(self, raw_key: bytes | None, exc: ConnectionsError, offset: int) -> None:
        try:
            tenant, integration = codec.parse_record_key(raw_key)
        except ConnectionsError:
            log.warning("skipping record at %s offset %d: %s", self.topic, offset, exc,
                        extra={"code": exc.code})
            return
        key = (tenant, integration)
        # What this process cannot read is not in effect here: fail closed.
        self._connections.pop(key, None)
        self.unreadable[key] = Unreadable(exc.code, exc.message, offset)
        log.warning("connection %s/%s at %s offset %d is unreadable [%s]: %s", tenant, integration, self.topic,
                    offset, exc.code, exc, extra={"tenant": tenant, "code": exc.code})
        if self._on_change is not None:
            self._on_change(key, None)


class ConnectionWriter:
    """Writes connections (sealed under the ring's current key) and tombstones, waiting for the ack."""

    def __init__(self, settings: Settings, ring: KeyRing, topic: str = DEFAULT_TOPIC) -> None:
        self.ring = ring
        self.topic = topic
        ensure_topic(settings, topic)
        self._producer = Producer(producer_config(settings, **{"linger.ms": 0}))

    def put(self, connection: Connection) -> int:
        """Write ``connection``; return its offset once the broker has it."""
        key, value = codec.encode(connection, self.ring)
        return self._produce(key, value)

    def delete(self, tenant: str, integration: str) -> int:
        """Write a tombstone for (tenant, integration): compaction forgets it, readers drop it."""
        key, value = codec.tombstone(tenant, integration)
        return self._produce(key, value)

    def _produce(self, key: bytes, value: bytes | None) -> int:
        reports: list[tuple[KafkaError | None, Message]] = []

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            reports.append((error, message))  # only recorded: raised below, never in the callback

        try:
            self._producer.produce(self.topic, key=key, value=value, on_delivery=on_delivery)
        except (BufferError, KafkaException) as exc:
            raise ConnectionsError(f"cannot write to {self.topic}: {exc}", code=codes.CONNECTIONS_UNAVAILABLE) from None
        left = self._producer.flush(WRITE_TIMEOUT_S)
        if left or not reports:
            raise ConnectionsError(f"the write to {self.topic} was not acknowledged within {WRITE_TIMEOUT_S:.0f}s",
                                   code=codes.CONNECTIONS_UNAVAILABLE)
        error, message = reports[0]
        if error is not None or message.offset() is None:
            raise ConnectionsError(f"cannot write to {self.topic}: {error}", code=codes.CONNECTIONS_UNAVAILABLE)
        return int(message.offset() or 0)

    def close(self) -> None:
        """Flush what is queued (each write already waited for its ack)."""
        self._producer.flush(WRITE_TIMEOUT_S)

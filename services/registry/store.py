"""Registry state kept in a single-partition compacted topic, without a leader.

Every process tails the topic from the beginning and folds each record into the same
:class:`RegistryState`. Ids and versions are *outputs of that fold*, so processes that read
the same log agree on them without talking to each other:

* a schema's global id is 1 + the number of distinct schemas seen earlier in the log;
* a new version under a subject is 1 + the highest version the subject ever had.

Compaction keeps only the last record per key, so a record that can move an id is written
under a key no other record has (it carries a nonce) and is never compacted away; only
config and sync-marker records share keys, and they never move an id. Replaying a compacted
log therefore gives the same ids (``tests/unit/test_registry_compat.py`` checks that).

A write is: take the process's write lock, catch up (sync), decide from applied state
(idempotent answer, compatibility refusal, or a record to write), produce with the
idempotent producer, wait for the delivery report, then wait until the tailing consumer has
applied that offset and answer from the record's own outcome (read-your-writes).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from router import codes
from router.errors import ConfigError, RegistryError
from router.kafka import (
    COMPACTED_TOPIC_CONFIG,
    admin_client,
    consumer_config,
    ensure_topics,
    producer_config,
    wait_for_broker,
)
from router.settings import Settings
from services.registry.compat import (
    DEFAULT_COMPATIBILITY,
    AvroSchema,
    Compatibility,
    check_compatibility,
    parse_avro,
    parse_compatibility,
)

logger = logging.getLogger(__name__)

# Confluent error codes; the HTTP status is the first three digits (409 is its own code).
SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
SUBJECT_NOT_SOFT_DELETED = 40405
VERSION_NOT_SOFT_DELETED = 40407
INCOMPATIBLE = 409


@dataclass(frozen=True)
class Refusal:
    """A request the registry answers with a Confluent error instead of a write."""

    error_code: int
    message: str


@dataclass(frozen=True)
class Registered:
    """Where a schema sits under a subject."""

    schema_id: int
    version: int


@dataclass(frozen=True)
class Deleted:
    """The versions a delete removed (soft or permanent)."""

    versions: list[int]


@dataclass(frozen=True)
class SchemaEntry:
    """A distinct schema and its global id."""

    schema_id: int
    fingerprint: str
    text: str


@dataclass
class SubjectVersion:
    version: int
    schema_id: int
    fingerprint: str
    deleted: bool = False


@dataclass
class Subject:
    name: str
    versions: list[SubjectVersion] = field(default_factory=list)
    highest_version: int = 0


def _dumps(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def schema_record(subject: str, schema: AvroSchema, nonce: str) -> tuple[bytes, bytes]:
    """Key and value that register ``schema`` under ``subject``."""
    key = {"kind": "schema", "subject": subject, "fingerprint": schema.fingerprint, "nonce": nonce}
    return _dumps(key), _dumps({**key, "schema": schema.text, "schemaType": "AVRO"})


def delete_record(subject: str, version: int | None, *, permanent: bool, nonce: str) -> tuple[bytes, bytes]:
    """Key and value that delete one version (or, with ``version=None``, the whole subject)."""
    key = {"kind": "delete", "subject": subject, "nonce": nonce}
    return _dumps(key), _dumps({**key, "version": version, "permanent": permanent})


def config_record(subject: str | None, level: Compatibility | None) -> tuple[bytes, bytes]:
    """Key and value that set (or, with ``level=None``, clear) a compatibility level."""
    key = {"kind": "config", "subject": subject}
    return _dumps(key), _dumps({**key, "compatibility": level.value if level else None})


def sync_record(nonce: str) -> tuple[bytes, bytes]:
    """A marker that changes nothing; one shared key, so compaction keeps only the newest."""
    return _dumps({"kind": "sync"}), _dumps({"kind": "sync", "nonce": nonce})


class RegistryState:
    """The fold of the ``_schemas`` log: pure, deterministic, no I/O."""

    def __init__(self) -> None:
        self.schemas_by_fingerprint: dict[str, SchemaEntry] = {}
        self.schemas_by_id: dict[int, SchemaEntry] = {}
        self.subjects: dict[str, Subject] = {}
        self.global_level: Compatibility = DEFAULT_COMPATIBILITY
        self.subject_levels: dict[str, Compatibility] = {}
        self._parsed: dict[str, AvroSchema] = {}

    # -- applying the log ------------------------------------------------------------------

    def apply(self, value: bytes | None) -> tuple[str, Registered | Deleted] | None:
        """Fold one record value; return (nonce, outcome) for schema and delete records.

        Records this version does not understand are skipped, identically in every process.
        """
        if value is None:  # nothing here writes tombstones; ignore a hand-made one
            return None
        doc = orjson.loads(value)
        kind = doc.get("kind")
        if kind == "schema":
            return doc["nonce"], self._apply_schema(doc["subject"], doc["fingerprint"], doc["schema"])
        if kind == "delete":
            return doc["nonce"], self._apply_delete(doc["subject"], doc["version"], doc["permanent"])
        if kind == "config":
            self._apply_config(doc["subject"], doc["compatibility"])
        return None

    def _apply_schema(self, subject_name: str, fingerprint: str, text: str) -> Registered:
        entry = self.schemas_by_fingerprint.get(fingerprint)
        if entry is None:
            entry = SchemaEntry(len(self.schemas_by_fingerprint) + 1, fingerprint, text)
            self.schemas_by_fingerprint[fingerprint] = entry
            self.schemas_by_id[entry.schema_id] = entry
        subject = self.subjects.setdefault(subject_name, Subject(subject_name))
        live = self.find(subject_name, fingerprint)
        if live is not None:  # two writers raced to register the same schema: one version
            return Registered(entry.schema_id, live.version)
        subject.highest_version += 1
        subject.versions.append(SubjectVersion(subject.highest_version, entry.schema_id, fingerprint))
        return Registered(entry.schema_id, subject.highest_version)

    def _apply_delete(self, subject_name: str, version: int | None, permanent: bool) -> Deleted:
        subject = self.subjects.get(subject_name)
        if subject is None:
            return Deleted([])
        targets = [v for v in subject.versions if version is None or v.version == version]
        if permanent:
            gone = [v for v in targets if v.deleted]
            subject.versions = [v for v in subject.versions if v not in gone]
        else:
            gone = [v for v in targets if not v.deleted]
            for v in gone:
                v.deleted = True
        return Deleted([v.version for v in gone])

    def _apply_config(self, subject: str | None, raw_level: str | None) -> None:
        level = parse_compatibility(raw_level)
        if subject is None:
            self.global_level = level or DEFAULT_COMPATIBILITY
        elif level is None:
            self.subject_levels.pop(subject, None)
        else:
            self.subject_levels[subject] = level

    # -- queries ---------------------------------------------------------------------------

    def subject_names(self, *, deleted: bool = False) -> list[str]:
        """Subjects with at least one live version (or any version, with ``deleted``)."""
        return sorted(name for name in self.subjects if self.versions(name, deleted=deleted))

    def versions(self, subject: str, *, deleted: bool = False) -> list[SubjectVersion]:
        """The subject's versions, oldest first; soft-deleted ones only with ``deleted``."""
        found = self.subjects.get(subject)
        return [v for v in found.versions if deleted or not v.deleted] if found else []

    def version(self, subject: str, version: int | str, *, deleted: bool = False) -> SubjectVersion | None:
        """One version by number, or ``"latest"`` for the newest live one."""
        versions = self.versions(subject, deleted=deleted)
        if version == "latest":
            return versions[-1] if versions else None
        return next((v for v in versions if v.version == version), None)

    def find(self, subject: str, fingerprint: str, *, deleted: bool = False) -> SubjectVersion | None:
        """The version under which ``subject`` holds the schema with ``fingerprint``."""
        return next((v for v in self.versions(subject, deleted=deleted) if v.fingerprint == fingerprint), None)

    def level(self, subject: str | None) -> Compatibility:
        """The compatibility level in force for ``subject`` (its own, else the global one)."""
        if subject is None:
            return self.global_level
        return self.subject_levels.get(subject, self.global_level)

    def parsed(self, fingerprint: str) -> AvroSchema:
        """The parsed schema for ``fingerprint``, parsed once and kept."""
        if fingerprint not in self._parsed:
            self._parsed[fingerprint] = parse_avro(self.schemas_by_fingerprint[fingerprint].text)
        return self._parsed[fingerprint]

    def history(self, subject: str) -> list[tuple[int, AvroSchema]]:
        """Live (version, schema) pairs of ``subject``, oldest first, for compatibility checks."""
        return [(v.version, self.parsed(v.fingerprint)) for v in self.versions(subject)]

    # -- decisions (pure: what a write would do, before writing) ---------------------------

    def plan_register(self, subject: str, schema: AvroSchema) -> Registered | Refusal | None:
        """An answer without writing (already there, or incompatible), or None: write it."""
        live = self.find(subject, schema.fingerprint)
        if live is not None:
            return Registered(live.schema_id, live.version)
        level = self.level(subject)
        result = check_compatibility(level, schema, self.history(subject))
        if not result.is_compatible:
            details = "; ".join(result.messages)
            return Refusal(
                INCOMPATIBLE,
                f'Schema being registered is incompatible with an earlier schema for subject "{subject}" '
                f"(compatibility {level.value}): {details}",
            )
        return None

    def plan_delete(self, subject: str, version: int | str | None, *, permanent: bool) -> Refusal | None:
        """A refusal (nothing to delete, or not soft-deleted first), or None: write the delete."""
        if not self.versions(subject, deleted=True):
            return Refusal(SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        if version is None:
            if not permanent and not self.versions(subject):
                return Refusal(SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
            if permanent and self.versions(subject):
                return Refusal(SUBJECT_NOT_SOFT_DELETED, f"Subject '{subject}' must be soft deleted first.")
            return None
        found = self.version(subject, version, deleted=permanent)
        if found is None:
            return Refusal(VERSION_NOT_FOUND, f"Version {version} not found.")
        if permanent and not found.deleted:
            return Refusal(VERSION_NOT_SOFT_DELETED, f"Version {found.version} must be soft deleted first.")
        return None


class SchemaStore:
    """The registry's view of the ``_schemas`` topic: tails it, writes to it, answers from it."""

    def __init__(
        self,
        settings: Settings,
        topic: str = "_schemas",
        *,
        connect_deadline_s: float = 15.0,
        op_deadline_s: float = 15.0,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.state = RegistryState()
        self.connect_deadline_s = connect_deadline_s
        self.op_deadline_s = op_deadline_s
        self.applied_offset = -1
        self.failure: RegistryError | None = None
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self._tail_task: asyncio.Task[None] | None = None
        self._closing = False
        # One thread owns consumer polls so a busy default executor cannot stall the tail.
        self._poller = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"registry-tail-{topic}")
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._awaited: dict[str, Registered | Deleted | None] = {}
        # Serialises this process's writes: its own racers never both pass a check.
        self._write_lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, create the topic if needed, and read it to the end before returning."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self._connect)
            self._tail_task = asyncio.create_task(self._tail(), name=f"registry-tail-{self.topic}")
            # Tansu reports the high watermark as the last batch's base offset, so "caught up"
            # is decided by writing a marker and reading until it comes back.
            await self.sync()
        except BaseException:
            await self.stop()
            raise
        logger.info("registry caught up on %s at offset %d", self.topic, self.applied_offset)

    def _connect(self) -> None:
        wait_for_broker(self.settings, deadline_s=self.connect_deadline_s)
        admin = admin_client(self.settings)
        ensure_topics(
            admin,
            [self.topic],
            partitions=1,
            replication_factor=self.settings.replication_factor,
            config=COMPACTED_TOPIC_CONFIG,
            min_insync_replicas=self.settings.topic_min_insync(),
        )
        metadata = admin.list_topics(self.topic, timeout=self.connect_deadline_s).topics.get(self.topic)
        if metadata is not None and len(metadata.partitions) > 1:
            # Ids come from the order of one log; several partitions have no single order.
            raise ConfigError(
                f"topic {self.topic!r} has {len(metadata.partitions)} partitions; the registry needs exactly 1"
            )
        try:
            self._producer = Producer(producer_config(self.settings, **{"linger.ms": 0}))
            self._consumer = Consumer(
                consumer_config(
                    self.settings,
                    f"router.registry.{uuid.uuid4().hex}",  # never joined: we assign()
                    **{"fetch.wait.max.ms": 50, "enable.partition.eof": False},
                )
            )
        except KafkaException as exc:
            raise ConfigError(f"could not create Kafka clients for the registry: {exc}") from None
        self._consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])

    async def stop(self) -> None:
        """Stop tailing, close the consumer, flush the producer."""
        self._closing = True
        if self._tail_task is not None:
            await self._tail_task
        loop = asyncio.get_running_loop()
        if self._consumer is not None:
            await loop.run_in_executor(self._poller, self._consumer.close)
        if self._producer is not None:
            left = await loop.run_in_executor(None, self._producer.flush, self.op_deadline_s)
            if left:
                logger.warning("registry producer closed with %d undelivered records", left)
        # Dropping the clients destroys them; kept, they would reconnect for as long as we live.
        self._consumer = self._producer = None
        self._poller.shutdown(wait=True)
        self._fail(RegistryError("the registry is stopping", code=codes.REGISTRY_STOPPED))

    # -- tailing ---------------------------------------------------------------------------

    async def _tail(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._consumer is not None
        while not self._closing:
            try:
                messages = await loop.run_in_executor(self._poller, self._consumer.consume, 500, 0.1)
            except KafkaException as exc:
                self._consumer_error(exc.args[0])
                continue
            except Exception as exc:
                logger.exception("registry tail on %s stopped", self.topic)
                self._fail(RegistryError(f"reading {self.topic} failed: {exc}", code=codes.REGISTRY_STORE))
                return
            for message in messages:
                self._apply(message)
            self._wake()

    def _apply(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            self._consumer_error(error)
            return
        offset = message.offset()
        try:
            applied = self.state.apply(message.value())
        except Exception:
            # A record this code cannot fold is skipped the same way in every process.
            logger.exception("skipping unreadable record at %s offset %s", self.topic, offset)
            applied = None
        if applied is not None and applied[0] in self._awaited:
            self._awaited[applied[0]] = applied[1]
        if offset is not None:
            self.applied_offset = max(self.applied_offset, offset)

    def _consumer_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fail(RegistryError(f"reading {self.topic} failed: {error}", code=codes.REGISTRY_STORE))
            self._closing = True
        else:
            logger.warning("registry consumer on %s: %s (retrying)", self.topic, error)

    def _wake(self) -> None:
        pending = []
        for offset, future in self._waiters:
            if future.done():
                continue
            if offset <= self.applied_offset:
                future.set_result(None)
            else:
                pending.append((offset, future))
        self._waiters = pending

    def _fail(self, failure: RegistryError) -> None:
        if self.failure is None:
            self.failure = failure
        for _, future in self._waiters:
            if not future.done():
                future.set_exception(failure)
        self._waiters = []

    async def _wait_applied(self, offset: int) -> None:
        if self.applied_offset >= offset:
            return
        if self.failure is not None:
            raise self.failure
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((offset, future))
        try:
            async with asyncio.timeout(self.op_deadline_s):
                await future
        except TimeoutError:
            raise RegistryError(
                f"the registry did not read back offset {offset} of {self.topic} within {self.op_deadline_s:.0f}s",
                code=codes.REGISTRY_TIMEOUT,
            ) from None

    # -- writing ---------------------------------------------------------------------------

    def _produce_blocking(self, key: bytes, value: bytes) -> int:
        """Produce one record and flush; the delivery callback only records, we raise here."""
        assert self._producer is not None
        reports: list[tuple[KafkaError | None, Message]] = []
        delivered = threading.Event()

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            reports.append((error, message))
            delivered.set()

        try:
            self._producer.produce(self.topic, key=key, value=value, partition=0, on_delivery=on_delivery)
        except (BufferError, KafkaException) as exc:
            raise RegistryError(f"could not write to {self.topic}: {exc}", code=codes.REGISTRY_STORE) from None
        # Another thread's flush may serve our callback; the event covers the moment between
        # the queue emptying and that callback having run.
        left = self._producer.flush(self.op_deadline_s)
        if left or not delivered.wait(self.op_deadline_s):
            raise RegistryError(
                f"write to {self.topic} not acknowledged within {self.op_deadline_s:.0f}s", code=codes.REGISTRY_TIMEOUT
            )
        error, message = reports[0]
        offset = message.offset()
        if error is not None or offset is None:
            raise RegistryError(f"could not write to {self.topic}: {error}", code=codes.REGISTRY_STORE)
        return offset

    async def _write(self, record: tuple[bytes, bytes]) -> int:
        if self.failure is not None:
            raise self.failure
        offset = await asyncio.get_running_loop().run_in_executor(None, self._produce_blocking, *record)
        await self._wait_applied(offset)
        return offset

    async def _write_for_outcome(self, nonce: str, record: tuple[bytes, bytes]) -> Registered | Deleted | None:
        self._awaited[nonce] = None
        try:
            await self._write(record)
            return self._awaited[nonce]
        finally:
            del self._awaited[nonce]

    async def sync(self) -> None:
        """Wait until everything written to the topic before this call has been applied."""
        await self._write(sync_record(uuid.uuid4().hex))

    async def register(self, subject: str, schema: AvroSchema) -> Registered | Refusal:
        """Register ``schema`` under ``subject``: idempotent, checked, read-your-writes."""
        live = self.state.find(subject, schema.fingerprint)
        if live is not None:  # the common case (every serializer start-up): no write, no lock
            return Registered(live.schema_id, live.version)
        async with self._write_lock:
            await self.sync()  # check against what every process has written so far
            planned = self.state.plan_register(subject, schema)
            if planned is not None:
                return planned
            nonce = uuid.uuid4().hex
            outcome = await self._write_for_outcome(nonce, schema_record(subject, schema, nonce))
        if not isinstance(outcome, Registered):
            raise RegistryError(f"registration of {subject!r} was written but not read back", code=codes.REGISTRY_STORE)
        return outcome

    async def delete(self, subject: str, version: int | str | None, *, permanent: bool) -> Deleted | Refusal:
        """Delete one version (``"latest"`` allowed) or, with ``version=None``, the whole subject."""
        async with self._write_lock:
            await self.sync()
            refusal = self.state.plan_delete(subject, version, permanent=permanent)
            if refusal is not None:
                return refusal
            if version == "latest":
                found = self.state.version(subject, "latest", deleted=permanent)
                version = found.version if found else None
            nonce = uuid.uuid4().hex
            number = int(version) if version is not None else None
            record = delete_record(subject, number, permanent=permanent, nonce=nonce)
            outcome = await self._write_for_outcome(nonce, record)
        return outcome if isinstance(outcome, Deleted) else Deleted([])

    async def set_compatibility(self, subject: str | None, level: Compatibility | None) -> None:
        """Set (or clear, with ``level=None``) the global or a subject's compatibility level."""
        async with self._write_lock:
            await self._write(config_record(subject, level))

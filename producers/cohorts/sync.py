"""One cohort sync run: snapshot → diff → publish → commit, in a fixed order.

The loop owns every socket; parsing and planning (snapshot.py, members.py) are pure.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from producers.cohorts.carry import CarryReader
from producers.cohorts.errors import CohortError
from producers.cohorts.guard import DEFAULT_MAX_REMOVAL_SHARE, check_not_empty, check_removals, removed_members
from producers.cohorts.members import CHUNK_IDS, Members, plan_sync, uncertain
from producers.cohorts.publish import Publisher
from producers.cohorts.records import new_sync_id
from producers.cohorts.snapshot import InvalidLine, read_snapshot
from producers.cohorts.state import CohortStore
from router import codes, redisconn
from router.errors import ConfigError, RegistryError
from router.kafka import admin_client, dlq_topic, ensure_topics
from router.schemas import COHORT_SCHEMA
from router.settings import Settings
from router.spec.avro_writer import Writer, compile_writer

LEASE_TTL_MS = 15_000
T = TypeVar("T")
MAX_LISTED = 20


@dataclass(frozen=True)
class SyncRequest:
    """What `router cohort sync` was asked to do (one run)."""

    audience: str
    snapshot: str
    destination: str | None = None
    tenant: str = "default"
    fmt: str | None = None
    column: str | None = None
    on_invalid: str = "reject"  # reject | skip
    schemas: Path = Path("schemas/avro")
    rate: float | None = None  # records per second, None = as fast as the broker takes them
    lease_wait_s: float = 60.0
    allow_empty: bool = False  # an empty snapshot is meant: remove every member (guard.py)
    max_removal_share: float = DEFAULT_MAX_REMOVAL_SHARE  # of the last synced membership (guard.py)

    @property
    def topic(self) -> str:
        return f"cohort.{self.audience}"


@dataclass
class SyncResult:
    """The summary of one run."""

    sync_id: str
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    records: int = 0
    seconds: float = 0.0
    diff_seconds: float = 0.0
    publish_seconds: float = 0.0
    state_bytes: int = 0
    carried_records: int = 0
    skipped: list[InvalidLine] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # seconds of the diff's steps

    def as_json(self) -> str:
        """The result as one JSON object (``router cohort sync --json``)."""
        return orjson.dumps({
            "sync_id": self.sync_id, "added": self.added, "removed": self.removed, "unchanged": self.unchanged,
            "records": self.records, "seconds": round(self.seconds, 3), "skipped": len(self.skipped),
            "carried_over": self.carried_records}).decode()

    def summary(self) -> str:
        """The last line the command prints."""
        return (f"added={self.added} removed={self.removed} unchanged={self.unchanged} records={self.records} "
                f"seconds={self.seconds:.2f}")


def describe_invalid(invalid: list[InvalidLine], path: str) -> str:
    """``N invalid line(s) in PATH: line 3: empty; ...`` with at most 20 listed."""
    listed = "; ".join(str(i) for i in invalid[:MAX_LISTED])
    more = f"; and {len(invalid) - MAX_LISTED} more" if len(invalid) > MAX_LISTED else ""
    return f"{len(invalid)} invalid line(s) in {path}: {listed}{more}"


class CohortSync:
    """Runs syncs with one set of clients (reused across runs of ``--every``)."""

    def __init__(self, settings: Settings, console: Console | None = None) -> None:
        if not settings.redis_url:
            raise ConfigError("REDIS_URL is not set; the cohort sync keeps the last synced membership in Redis")
        if not settings.schema_registry_url:
            raise ConfigError("SCHEMA_REGISTRY_URL is not set; cohort records are encoded with a registered id")
        self.settings = settings
        self.console = console or Console(stderr=True)
        self.redis = redisconn.connect(settings.redis_url, socket_timeout=60, socket_connect_timeout=5)
        self.registry = SchemaRegistryClient(settings.registry_conf())

    def close(self) -> None:
        """Close the Redis client and the registry client's HTTP connection pool."""
        self.redis.close()
        self.registry.close()

    def run(self, request: SyncRequest, stop: threading.Event | None = None) -> SyncResult:
        """One sync, in this order:

        1. read and check the snapshot (``reject``, or no valid id without ``allow_empty``: fail
           here, before anything is touched);
        2. take the lease of (audience, destination), kept alive by a thread;
        3. load the state and any unfinished run's journal; read the DLQs from the cursor;
        4. plan: the diff, plus what a killed run left uncertain, plus DLQ'd ids; fail if it
           removes more than ``max_removal_share`` of the state (nothing written yet);
        5. ensure the topics and the schema id; journal the target (``pending``) in Redis;
        6. publish every chunk; flush; fail if any record is not acknowledged;
        7. commit: pending → state (atomic RENAME, only if the lease is still ours), then the cursor;
        8. release the lease.
        A run that stops anywhere before 7 leaves the old state and its journal: the next run
        sends the diff again, plus every id the stopped run may have changed.
        """
        started = time.monotonic()
        phases: dict[str, float] = {}
        snapshot = read_snapshot(request.snapshot, request.fmt, request.column)
        if snapshot.invalid and request.on_invalid != "skip":
            raise CohortError(describe_invalid(snapshot.invalid, request.snapshot)
                              + "; nothing was published (--on-invalid skip syncs the valid ids)",
                              code=codes.COHORT_INVALID_SNAPSHOT)
        check_not_empty(bool(snapshot.data), len(snapshot.invalid), request.snapshot, request.allow_empty)
        phases["read"] = time.monotonic() - started
        target = Members.from_canonical(snapshot.data)
        result = SyncResult(new_sync_id(request.audience), skipped=snapshot.invalid, phases=phases)
        del snapshot
        phases["hash"] = time.monotonic() - started - phases["read"]
        store = CohortStore(self.redis, self.settings.redis_key_prefix, request.audience, request.destination)
        token = secrets.token_hex(8)
        store.acquire(token, LEASE_TTL_MS, request.lease_wait_s)
        carry = CarryReader(self.settings, self.registry, request.audience, request.destination)
        try:
            with _kept_alive(store, token) as healthy, ThreadPoolExecutor(1, thread_name_prefix="carry") as pool:
                # The DLQ read mostly waits on the broker: it runs while the state is loaded and rehashed.
                reading = pool.submit(_timed, carry.read)
                mark = time.monotonic()
                stored = store.load()
                phases["state"] = time.monotonic() - mark
                carried, phases["carry"] = reading.result()
                mark = time.monotonic()
                unknown = (uncertain(stored.state, stored.pending, stored.pending_unknown)
                           if stored.pending is not None else Members.empty())
                plan = plan_sync(target, stored.state, unknown, carried.failed_adds, carried.failed_removes)
                if not (request.allow_empty and len(target) == 0):  # emptying the audience was confirmed
                    check_removals(removed_members(stored.state, target), len(stored.state), request.audience,
                                   request.max_removal_share)
                phases["plan"] = time.monotonic() - mark
                result.added, result.removed, result.unchanged = plan.added, plan.removed, plan.unchanged
                result.carried_records, result.state_bytes = carried.records, stored.stored_bytes
                result.diff_seconds = time.monotonic() - started
                publish_started = time.monotonic()
                total = plan.records(CHUNK_IDS)
                if total:
                    schema_id, write = self._prepare(request)
                    result.state_bytes = store.write_pending(token, target, unknown, result.sync_id)
                    publisher = Publisher(self.settings, request.topic, schema_id, write)
                    with self._progress(total, request.audience) as advance:
                        result.records = publisher.publish(
                            plan.chunks(CHUNK_IDS), sync_id=result.sync_id, audience=request.audience,
                            destination=request.destination, tenant=request.tenant, rate=request.rate,
                            stop=stop, healthy=healthy, progress=advance)
                store.commit(token)
                carry.commit(carried.positions)
                result.publish_seconds = time.monotonic() - publish_started
        finally:
            carry.close()
            store.release(token)
        result.seconds = time.monotonic() - started
        return result

    def _prepare(self, request: SyncRequest) -> tuple[int, Writer]:
        """Create cohort.<audience> and its DLQ if missing; register the record schema under its subject."""
        ensure_topics(admin_client(self.settings), [request.topic, dlq_topic(request.topic)],
                      partitions=self.settings.topic_partitions, replication_factor=self.settings.replication_factor,
                      min_insync_replicas=self.settings.topic_min_insync())
        path = request.schemas / f"{COHORT_SCHEMA}.avsc"
        try:
            text = path.read_text()
        except OSError:
            raise ConfigError(f"{path} is missing; point --schemas at the folder holding {COHORT_SCHEMA}.avsc"
                              ) from None
        subject = f"{request.topic}-value"
        try:
            schema_id = self.registry.register_schema(subject, Schema(text, "AVRO"))
        except SchemaRegistryError as exc:
            raise RegistryError(f"registering {COHORT_SCHEMA} under {subject} failed: {exc.error_message} "
                                f"(HTTP {exc.http_status_code})", code=codes.REGISTRY_REGISTER_FAILED) from None
        return schema_id, compile_writer(json.loads(text))

    @contextmanager
    def _progress(self, total: int, audience: str) -> Iterator[Any]:
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("records"), TimeElapsedColumn(), console=self.console,
                            disable=not self.console.is_terminal)
        with progress if self.console.is_terminal else nullcontext():
            task = progress.add_task(f"cohort.{audience}", total=total)
            yield lambda: progress.advance(task)


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    mark = time.monotonic()
    return fn(), time.monotonic() - mark


@contextmanager
def _kept_alive(store: CohortStore, token: str) -> Iterator[Any]:
    """Refresh the lease every third of its TTL on a thread; yield a ``healthy()`` check."""
    done = threading.Event()
    lost = threading.Event()

    def beat() -> None:
        while not done.wait(LEASE_TTL_MS / 3000):
            try:
                if not store.refresh(token, LEASE_TTL_MS):
                    lost.set()
                    return
            except redisconn.ERRORS:
                continue  # the next beat tries again; the lease lasts three beats

    thread = threading.Thread(target=beat, name="cohort-lease", daemon=True)
    thread.start()
    try:
        yield lambda: not lost.is_set()
    finally:
        done.set()
        thread.join(5)

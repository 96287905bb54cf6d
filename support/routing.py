"""Helpers for route-worker tests: specs with unique topics, producing, reading topics back."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumers.route.state_redis import RedisState
from consumers.route.worker import RouteWorker, WorkerOptions
from router import redisconn
from router.kafka import admin_client, ensure_topics
from router.pipeline.stages import RoutingTable
from router.schemas import register_all
from router.settings import Settings
from router.spec.load import Catalog, load_catalog

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = (ROOT / "integrations" / "zendesk-escalations-to-pagerduty.yaml").read_text()


@dataclass
class Topology:
    """A test's integrations: folders, catalog and topic names, all unique to the test."""

    integrations: Path
    schemas: Path
    catalog: Catalog
    source_topic: str

    def dest_topic(self, destination: str) -> str:
        return f"delivery.{destination}"


def zendesk_spec(name: str, *, source: str, destination: str, on_stale: str = "drop", extra: str = "") -> str:
    """The shipped Zendesk → PagerDuty spec with its name, topics and stale policy replaced."""
    text = (EXAMPLE.replace("name: zendesk-escalations-to-pagerduty", f"name: {name}")
            .replace("topic: ingest.zendesk", f"topic: ingest.{source}")
            .replace("name: pagerduty", f"name: {destination}")
            .replace("ordering: {on_stale: drop}", f"ordering: {{on_stale: {on_stale}}}")
            .replace("fixtures: fixtures/zendesk-escalations/\n", ""))
    return text + extra


def make_topology(tmp_path: Path, name: str, specs: dict[str, str]) -> Topology:
    """Write ``specs`` (file stem → YAML) next to a copy of the shipped schemas and load them."""
    integrations = tmp_path / "integrations"
    integrations.mkdir(exist_ok=True)
    schemas = tmp_path / "schemas"
    if not schemas.exists():
        shutil.copytree(ROOT / "schemas" / "avro", schemas)
    for stem, text in specs.items():
        (integrations / f"{stem}.yaml").write_text(text)
    catalog = load_catalog(integrations, schemas)
    return Topology(integrations, schemas, catalog, catalog.source_topics()[0])


def prepare_services(settings: Settings, registry_url: str, topology: Topology, partitions: int = 3
                     ) -> dict[str, int]:
    """Create the topology's topics and register its schemas; return schema ids by integration."""
    ensure_topics(admin_client(settings), topology.catalog.all_topics(), partitions=partitions)
    with SchemaRegistryClient({"url": registry_url}) as registry:
        return register_all(registry, topology.catalog)


@contextmanager
def running_worker(settings: Settings, registry_url: str, topology: Topology, group: str, prefix: str,
                   batch_size: int = 500) -> Iterator[RouteWorker]:
    """A RouteWorker on a thread for the duration of the block; stopped (batch finished) on exit."""
    schema_ids = prepare_services(settings, registry_url, topology)
    client = redisconn.connect(settings.redis_url or "", socket_timeout=5)
    registry = SchemaRegistryClient({"url": registry_url})
    try:
        table = RoutingTable.build(topology.catalog.integrations, schema_ids, prefix,
                                   hash_tags=redisconn.clustered(client))
        worker = RouteWorker(settings, table, RedisState(client), registry,
                             WorkerOptions(group=group, batch_size=batch_size, backoff_initial_s=0.2, backoff_max_s=2),
                             health_client=client)
        with worker_thread(worker, f"route-{group}"):
            yield worker
    finally:
        registry.close()
        client.close()


@contextmanager
def worker_thread(worker: RouteWorker, name: str, join_s: float = 30) -> Iterator[RouteWorker]:
    """``worker.run`` on a thread for the duration of the block; on exit it is stopped (it finishes
    its batch) and must neither hang nor have crashed."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(join_s)
    assert not thread.is_alive(), f"route worker {name} did not stop within {join_s}s"
    assert not errors, f"route worker {name} crashed: {errors[0]!r}"


def zendesk_event(event_id: str, ticket: Any, sequence: int, *, title: Any = "Checkout down",
                  priority: str = "high", event_type: str = "ticket.escalated", **extra: Any) -> dict[str, Any]:
    """A Zendesk-like escalation event."""
    data: dict[str, Any] = {"ticket": {"id": ticket, "priority": priority, **extra}}
    if title is not None:
        data["ticket"]["title"] = title
    return {"event_id": event_id, "type": event_type, "sequence": sequence,
            "occurred_at": "2026-11-20T10:15:00Z", "data": data}


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]
            ) -> int:
    """Produce (key, value, headers) records and wait for every ack; return how many."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5,
                         "message.max.bytes": 4_000_000})
    failures: list[KafkaError] = []
    n = 0
    for key, value, headers in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=cast(Any, headers),
                                 on_delivery=lambda err, _m: failures.append(err) if err else None)
                break
            except BufferError:
                producer.poll(0.1)
        n += 1
        producer.poll(0)
    assert producer.flush(60) == 0, "produce did not finish in 60s"
    assert not failures, f"produce failed: {failures[:3]}"
    return n


def json_records(events: Iterable[dict[str, Any]], tenant: str = "acme", key_path: str | None = "ticket"
                 ) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    """Events as ingest records: key = ticket id, header router-tenant."""
    out = []
    for event in events:
        key = str(event["data"]["ticket"]["id"]).encode() if key_path else None
        out.append((key, orjson.dumps(event), [("router-tenant", tenant.encode())]))
    return out


def read_all(bootstrap: str, topic: str, *, expect: int, deadline_s: float = 60.0,
             settle_s: float = 0.0, done: Callable[[list[Any]], bool] | None = None) -> list[Any]:
    """Read a topic from the beginning (assign, no group) until ``expect`` records arrived.

    ``done`` replaces the count when a topic may hold duplicates (at-least-once redeliveries):
    reading stops when ``done(records so far)`` is true. With ``settle_s`` it keeps reading that
    long after, so a test can see records that should NOT be there. Fails at the deadline.
    """
    finished = done or (lambda records: len(records) >= expect)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
    out: list[Any] = []
    end = time.monotonic() + deadline_s
    reached_at: float | None = None
    try:
        while time.monotonic() < end:
            for msg in consumer.consume(1000, 0.2):
                if msg.error() is None:
                    out.append(msg)
            if finished(out):
                reached_at = reached_at or time.monotonic()
                if time.monotonic() - reached_at >= settle_s:
                    return out
    finally:
        consumer.close()
    raise AssertionError(f"{topic}: {len(out)} records (expected {expect}) after {deadline_s}s")


def headers_of(msg: Any) -> dict[str, str]:
    return {k: (v or b"").decode() for k, v in (msg.headers() or [])}

"""A record too large to dead-letter as it is (issue 15, finding 2) goes to the DLQ as a stub and
its partition moves on; a retried batch does not produce again what the broker acknowledged."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import orjson
import redis
from confluent_kafka import KafkaError
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumers.route.sinks import BatchSink, Pending
from consumers.route.state_redis import RedisState
from consumers.route.worker import RouteWorker, WorkerOptions
from router import headers as h
from router.deadletters import STUB_VALUE_BYTES
from router.pipeline.stages import RoutingTable
from router.settings import Settings
from support.routing import (
    headers_of,
    json_records,
    make_topology,
    prepare_services,
    produce,
    read_all,
    running_worker,
    worker_thread,
    zendesk_event,
    zendesk_spec,
)
from support.workers import wait_committed

BIG = 3_000_000  # over the route producer's message.max.bytes (2 MB): the DLQ write is refused as it is


def test_a_value_too_large_for_the_dlq_is_written_as_a_stub_and_the_partition_moves_on(
        settings: Settings, registry_url: str, tmp_path: Path, name: str) -> None:
    bootstrap = settings.kafka_bootstrap_servers or ""
    topo = make_topology(tmp_path, name, {"a": zendesk_spec(name, source=name, destination=f"{name}-pd")})
    big = orjson.dumps(zendesk_event("huge", 1, 1, title="x" * BIG))
    records = [*json_records([zendesk_event(f"a{i}", 10 + i, 1) for i in range(20)]),
               (b"1", big, [(h.TENANT, b"acme")]),
               *json_records([zendesk_event(f"b{i}", 40 + i, 1) for i in range(20)])]
    with running_worker(settings, registry_url, topo, name, f"{name}:"):
        produce(bootstrap, topo.source_topic, records)
        wait_committed(bootstrap, name, topo.source_topic, 3, len(records), deadline_s=90)
        dead = read_all(bootstrap, f"{topo.source_topic}.dlq", expect=1, deadline_s=30, settle_s=2.0)
        out = read_all(bootstrap, f"delivery.{name}-pd", expect=40, deadline_s=30, settle_s=2.0)
    assert len(dead) == 1
    stub = headers_of(dead[0])
    assert stub["router-error-code"] == "decode.too_large"
    assert stub["router-original-size"] == str(len(big))
    assert stub["router-original-sha256"] == hashlib.sha256(big).hexdigest()
    assert dead[0].value() == big[:STUB_VALUE_BYTES]
    copies = Counter(headers_of(m)["router-event-id"] for m in out)
    assert set(copies) == {f"a{i}" for i in range(20)} | {f"b{i}" for i in range(20)}
    assert max(copies.values()) == 1, f"batch-mates produced again: {copies.most_common(3)}"


class _FirstDlqFlushFails(BatchSink):
    """The real sink, except that its first flush with a dead letter in it reports that dead letter
    as not acknowledged (a transient broker error): the batch fails after its outputs were acked."""

    failed_once = False

    def flush(self) -> list[Pending]:
        letter = next((tag for _t, _k, _v, tag, is_dlq in self.sends if is_dlq), None)
        failed = super().flush()
        if letter is not None and not self.failed_once:
            self.failed_once = True
            failed.append(Pending(letter, True, KafkaError(KafkaError._TRANSPORT, "broker connection lost")))
        return failed


def test_a_retried_batch_does_not_produce_again_what_the_broker_acknowledged(
        settings: Settings, registry_url: str, registry_client: SchemaRegistryClient, tmp_path: Path,
        name: str) -> None:
    bootstrap = settings.kafka_bootstrap_servers or ""
    topo = make_topology(tmp_path, name, {"a": zendesk_spec(name, source=name, destination=f"{name}-pd")})
    schema_ids = prepare_services(settings, registry_url, topo, partitions=1)
    records = [*json_records([zendesk_event(f"a{i}", 10 + i, 1) for i in range(30)]),
               (b"1", b'{"event_id": ', [(h.TENANT, b"acme")])]  # poison: the batch has a dead letter
    produce(bootstrap, topo.source_topic, records)
    client = redis.Redis.from_url(settings.redis_url or "", socket_timeout=5)
    table = RoutingTable.build(topo.catalog.integrations, schema_ids, f"{name}:")
    worker = RouteWorker(settings, table, RedisState(client), registry_client,
                         WorkerOptions(group=name, backoff_initial_s=0.2, backoff_max_s=1))
    sink = worker.finisher.sink = _FirstDlqFlushFails(worker.producer)
    try:
        with worker_thread(worker, "route-retry"):
            wait_committed(bootstrap, name, topo.source_topic, 1, len(records), deadline_s=90)
    finally:
        client.close()
    assert sink.failed_once, "the injected failure never happened"
    out = read_all(bootstrap, f"delivery.{name}-pd", expect=30, deadline_s=30, settle_s=2.0)
    copies = Counter(headers_of(m)["router-event-id"] for m in out)
    assert set(copies) == {f"a{i}" for i in range(30)}
    assert max(copies.values()) == 1, f"outputs produced again by the retry: {copies.most_common(3)}"

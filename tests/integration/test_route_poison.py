"""Poison records (issue 15, findings 1, 3, 4): a real route worker, with its health writes on,
dead-letters each with a stable code, keeps going and commits — no crash, no stalled partition."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import redis
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumers.route.state_redis import RedisState
from consumers.route.worker import RouteWorker, WorkerOptions
from router import headers as h
from router.pipeline.stages import RoutingTable
from router.settings import Settings
from support.routing import (
    headers_of,
    make_topology,
    prepare_services,
    produce,
    read_all,
    worker_thread,
    zendesk_event,
    zendesk_spec,
)
from support.workers import wait_committed

DEEP = "[" * 1000 + '"x"' + "]" * 1000


def _body(event_id: str, ticket: int, *, title: str = '"down"', sequence: str = "1") -> bytes:
    event = zendesk_event(event_id, ticket, 1, title="TITLE")
    event["sequence"] = "SEQ"
    return orjson.dumps(event).replace(b'"TITLE"', title.encode()).replace(b'"SEQ"', sequence.encode())


def test_poison_records_are_dead_lettered_with_codes_and_the_worker_goes_on(
        settings: Settings, registry_url: str, registry_client: SchemaRegistryClient, tmp_path: Path,
        name: str) -> None:
    bootstrap = settings.kafka_bootstrap_servers or ""
    topo = make_topology(tmp_path, name, {"a": zendesk_spec(name, source=name, destination=f"{name}-pd")})
    schema_ids = prepare_services(settings, registry_url, topo, partitions=1)
    tenant = [(h.TENANT, b"acme")]
    poison = {
        "deep": (_body("p1", 1, title=DEEP), tenant, "map.type_error"),
        "received-at": (_body("p2", 2), [*tenant, (h.RECEIVED_AT, b"9" * 5000)], "validate.bad_header"),
        "attempts": (_body("p3", 3, title=DEEP), [*tenant, (h.ATTEMPTS, b"abc")], "map.type_error"),
        "infinity": (_body("p4", 4, sequence='"Infinity"'), tenant, "validate.bad_version"),
        "nan": (_body("p5", 5, sequence='"NaN"'), tenant, "validate.bad_version"),
    }
    records = []
    for i, (value, headers, _code) in enumerate(poison.values()):
        records.append((str(i).encode(), value, headers))
        records.append((str(i).encode(), _body(f"ok-{i}", 100 + i), tenant))  # each followed by a good record
    # After the poisoned versions, the same entities still route: no watermark was set to infinity.
    records += [(b"4", _body("after-inf", 4, sequence="2"), tenant),
                (b"5", _body("after-nan", 5, sequence="2"), tenant)]
    produce(bootstrap, topo.source_topic, records)

    client = redis.Redis.from_url(settings.redis_url or "", socket_timeout=5)
    table = RoutingTable.build(topo.catalog.integrations, schema_ids, f"{name}:")
    worker = RouteWorker(settings, table, RedisState(client), registry_client,
                         WorkerOptions(group=name, backoff_initial_s=0.2, backoff_max_s=1), health_client=client)
    try:
        with worker_thread(worker, "route-poison"):  # fails if the worker crashed
            wait_committed(bootstrap, name, topo.source_topic, 1, len(records), deadline_s=90)
    finally:
        client.close()
    dead = read_all(bootstrap, f"{topo.source_topic}.dlq", expect=len(poison), deadline_s=30, settle_s=2.0)
    assert Counter(headers_of(m)["router-error-code"] for m in dead) == Counter(c for _v, _h, c in poison.values())
    assert sorted(m.value() for m in dead) == sorted(v for v, _h, _c in poison.values()), "values untouched"
    routed = {headers_of(m)["router-event-id"] for m in read_all(bootstrap, f"delivery.{name}-pd", expect=7,
                                                                  deadline_s=30, settle_s=2.0)}
    assert routed == {f"ok-{i}" for i in range(len(poison))} | {"after-inf", "after-nan"}

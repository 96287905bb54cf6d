"""A stuck consumer group is seen and said (issue 14, finding 4).

The embedded broker's wedge (docs/embedded-broker.md) cannot be summoned on demand, so the test
makes what a worker sees in it: the group hands this worker no partition, commits nothing, and
has lag — here because another member holds the only partition and never commits.
"""

from __future__ import annotations

import threading
from pathlib import Path

import redis
from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumers.route.state_redis import RedisState
from consumers.route.worker import RouteWorker, WorkerOptions
from router import groupwatch
from router.kafka import consumer_config
from router.pipeline.stages import RoutingTable
from router.settings import Settings
from support.routing import (
    json_records,
    make_topology,
    prepare_services,
    produce,
    worker_thread,
    zendesk_event,
    zendesk_spec,
)
from support.services import wait_for


def test_a_worker_without_partitions_in_a_group_that_does_not_move_turns_unhealthy(
        settings: Settings, registry_url: str, registry_client: SchemaRegistryClient, tmp_path: Path,
        name: str) -> None:
    bootstrap = settings.kafka_bootstrap_servers or ""
    topo = make_topology(tmp_path, name, {"a": zendesk_spec(name, source=name, destination=f"{name}-pd")})
    schema_ids = prepare_services(settings, registry_url, topo, partitions=1)
    produce(bootstrap, topo.source_topic, json_records([zendesk_event(f"e{i}", i, 1) for i in range(20)]))

    holder = Consumer(consumer_config(settings, name))  # takes the partition, never commits
    holder.subscribe([topo.source_topic])
    stop_holding = threading.Event()
    wait_for(lambda: holder.consume(10, 0.2) is not None and holder.assignment(), deadline_s=60,
             what="the holding member to get the partition")

    def hold() -> None:
        while not stop_holding.is_set():
            holder.consume(10, 0.2)

    holding = threading.Thread(target=hold, daemon=True)
    holding.start()
    client = redis.Redis.from_url(settings.redis_url or "", socket_timeout=5)
    table = RoutingTable.build(topo.catalog.integrations, schema_ids, f"{name}:")
    worker = RouteWorker(settings, table, RedisState(client), registry_client,
                         WorkerOptions(group=name), health_client=client)
    worker.watch.stuck_after_s = 4.0  # the documented wait is 5 session timeouts; shortened for the test
    try:
        with worker_thread(worker, "route-spare"):
            assert worker.healthy()
            wait_for(lambda: worker.watch.stuck, deadline_s=60, what="the worker to call its group stuck")
            assert not worker.healthy(), "/healthz fails while the group is stuck"
            banner = wait_for(lambda: groupwatch.stuck_groups(client.hgetall(groupwatch.page_key(f"{name}:")),
                                                              groupwatch.time_ms()), deadline_s=10,
                              what="the health page's stuck-group entry")
            assert banner == [name]
            assert worker.watch.lag > 0
    finally:
        stop_holding.set()
        holding.join(10)
        holder.close()
        client.close()

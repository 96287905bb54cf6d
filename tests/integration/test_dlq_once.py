"""One DLQ copy per record (issue 14, finding 2): a worker that dies between its DLQ write and its
commit must not make the partition's next owner write the record again.

The crash is made deterministic: the first worker finishes its batches (outputs and DLQ writes
acknowledged by the broker) but never commits, as if killed right before each commit; then it
leaves, and a second worker of the same group redelivers everything from the last commit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumers.route.state_redis import RedisState
from consumers.route.worker import RouteWorker, WorkerOptions
from router.pipeline.records import Inbound
from router.pipeline.stages import RoutingTable
from router.settings import Settings
from support.routing import (
    headers_of,
    json_records,
    make_topology,
    prepare_services,
    produce,
    read_all,
    worker_thread,
    zendesk_event,
    zendesk_spec,
)
from support.services import wait_for
from support.workers import wait_committed

POISON = b'{"event_id": '


class _DiesBeforeCommit(RouteWorker):
    """Finishes batches but never commits them: each commit is where a SIGKILL landed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.finished: list[int] = []

    def _commit(self, batch: Sequence[Inbound], *, asynchronous: bool) -> None:
        self.finished.append(len(batch))


def test_a_worker_dying_between_dlq_write_and_commit_does_not_dead_letter_twice(
        settings: Settings, registry_url: str, registry_client: SchemaRegistryClient, tmp_path: Path,
        name: str) -> None:
    bootstrap = settings.kafka_bootstrap_servers or ""
    topo = make_topology(tmp_path, name, {"a": zendesk_spec(name, source=name, destination=f"{name}-pd",
                                                            on_stale="dlq")})
    schema_ids = prepare_services(settings, registry_url, topo)
    events = [zendesk_event(f"evt-{i}", 7000 + i, 2) for i in range(40)]
    stale = [zendesk_event(f"old-{i}", 7000 + i, 1) for i in range(10)]  # order.stale, dead-lettered
    records = json_records(events) + json_records(stale)
    poison = [(str(7000 + i).encode(), POISON, [("router-tenant", b"acme")]) for i in range(10)]
    total = produce(bootstrap, topo.source_topic, [*records, *poison])
    table = RoutingTable.build(topo.catalog.integrations, schema_ids, f"{name}:")
    client = redis.Redis.from_url(settings.redis_url or "", socket_timeout=5)
    options = WorkerOptions(group=name, batch_size=500, backoff_initial_s=0.2, backoff_max_s=1)
    try:
        first = _DiesBeforeCommit(settings, table, RedisState(client), registry_client, options)
        with worker_thread(first, "route-dies"):
            wait_for(lambda: sum(first.finished) >= total, deadline_s=120,
                     what="the first worker to finish every record")
        second = RouteWorker(settings, table, RedisState(client), registry_client, options)
        with worker_thread(second, "route-next-owner"):
            wait_committed(bootstrap, name, topo.source_topic, 3, total, deadline_s=120)
    finally:
        client.close()
    dead = read_all(bootstrap, f"{topo.source_topic}.dlq", expect=0, deadline_s=30, settle_s=3.0)
    copies = Counter((headers_of(m)["router-original-partition"], headers_of(m)["router-original-offset"])
                     for m in dead)
    assert len(copies) == len(poison) + len(stale), f"{len(copies)} records dead-lettered, expected 20"
    doubled = {coords: n for coords, n in copies.items() if n > 1}
    assert not doubled, f"{len(doubled)} record(s) dead-lettered more than once: {list(doubled.items())[:3]}"
    codes = Counter(headers_of(m)["router-error-code"] for m in dead)
    assert codes == {"decode.invalid_json": 10, "order.stale": 10}, codes

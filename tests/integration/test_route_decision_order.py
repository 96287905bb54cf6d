"""Decisions in offset order (issue 14, finding 1): a Redis stall between two batches' decisions.

The route worker decides batch N+1 on its ``route-state`` thread while N is still in hand. When
N's decide times out (Redis frozen) and N+1's is already queued, N+1 must not be decided first:
N+1 holds newer versions of N's entities, so N's records, decided after it, would be judged stale
against watermarks N+1 raised — and that verdict, stored with their coordinates, repeats on
every redelivery. The events are lost. Here the stall is made deterministic: the real Redis
state store, whose first decide waits until the worker has staged the next batch and then times
out as a frozen Redis does.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from confluent_kafka.schema_registry import SchemaRegistryClient

from consumers.route.finish import Staged
from consumers.route.state_redis import RedisState
from consumers.route.worker import RouteWorker, WorkerOptions
from router.deadletters import Slot
from router.pipeline.records import Claim, Decision, Inbound
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
from support.workers import wait_committed

ENTITIES = 200


class _StagesSeen(RouteWorker):
    """A route worker that tells the test when it has staged its second batch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.staged = 0
        self.second_staged = threading.Event()

    def run_stages(self, batch: list[Inbound]) -> Staged:
        staged = super().run_stages(batch)
        self.staged += 1
        if self.staged == 2:
            self.second_staged.set()
        return staged


class _FirstDecideTimesOut:
    """The real Redis state store, except that its first ``decide`` waits (bounded) until the next
    batch is queued behind it, then fails as a frozen Redis does, without reaching Redis."""

    def __init__(self, inner: RedisState, queued_behind: threading.Event) -> None:
        self.inner = inner
        self.queued_behind = queued_behind
        self.calls = 0

    def decide(self, claims: Sequence[Claim]) -> list[Decision]:
        self.calls += 1
        if self.calls == 1:
            self.queued_behind.wait(30)
            raise redis.TimeoutError("Timeout reading from socket")
        return self.inner.decide(claims)

    def release(self, claims: Sequence[Claim]) -> None:
        self.inner.release(claims)

    def dead_lettered(self, slots: Sequence[Slot]) -> list[bool]:
        return self.inner.dead_lettered(slots)

    def record_dead_letters(self, slots: Sequence[Slot], codes: Sequence[str]) -> None:
        self.inner.record_dead_letters(slots, codes)


def test_a_decide_that_times_out_is_not_overtaken_by_the_next_batch(
        settings: Settings, registry_url: str, registry_client: SchemaRegistryClient, tmp_path: Path,
        name: str) -> None:
    bootstrap = settings.kafka_bootstrap_servers or ""
    topo = make_topology(tmp_path, name, {"a": zendesk_spec(name, source=name, destination=f"{name}-pd")})
    schema_ids = prepare_services(settings, registry_url, topo, partitions=1)
    # One partition: the first batch is every entity's version 1, the second their version 2.
    first = [zendesk_event(f"v1-{i}", 5000 + i, 1) for i in range(ENTITIES)]
    second = [zendesk_event(f"v2-{i}", 5000 + i, 2) for i in range(ENTITIES)]
    produce(bootstrap, topo.source_topic, json_records(first + second))
    ids = {e["event_id"] for e in first + second}

    client = redis.Redis.from_url(settings.redis_url or "", socket_timeout=5)
    table = RoutingTable.build(topo.catalog.integrations, schema_ids, f"{name}:")
    worker = _StagesSeen(settings, table, RedisState(client), registry_client,
                         WorkerOptions(group=name, batch_size=ENTITIES, backoff_initial_s=0.2, backoff_max_s=1))
    state = _FirstDecideTimesOut(RedisState(client), worker.second_staged)
    worker.state = worker.finisher.state = state
    try:
        with worker_thread(worker, "route-order"):
            wait_committed(bootstrap, name, topo.source_topic, 1, len(ids), deadline_s=120)
    finally:
        client.close()
    # Outputs are acknowledged before their batch is committed: the topic is complete now.
    out = read_all(bootstrap, f"delivery.{name}-pd", expect=0, deadline_s=30, settle_s=3.0)
    assert worker.second_staged.is_set(), "the second batch was never staged behind the first decide"
    routed = {headers_of(m)["router-event-id"] for m in out}
    lost = sorted(ids - routed)
    assert not lost, f"{len(lost)} event(s) never routed, judged stale against a later batch: {lost[:5]}"
    assert len(out) == len(ids), f"{len(out) - len(ids)} output(s) routed twice"

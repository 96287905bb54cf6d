"""The route worker on a Redis Cluster while it changes under it (issue 19, docs/redis.md):
slots migrating between masters mid-run and a master frozen for ten seconds cost no record and no
decision — every event is routed, and no re-sent copy gets through."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from router import redisconn
from router.settings import Settings
from support.routing import (
    headers_of,
    json_records,
    make_topology,
    prepare_services,
    produce,
    read_all,
    zendesk_event,
    zendesk_spec,
)
from support.services import Budget, wait_for
from support.workers import WorkerProcess, wait_committed, worker_env
from tools.dev.embedded.procs import ChildProcess
from tools.dev.embedded.redis import start_redis_cluster

PARTITIONS = 3
RESENT = b"RESENT-COPY"  # in the title of every re-sent copy: it must never reach the delivery topic


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[tuple[list[ChildProcess], str]]:
    """A private 3-master cluster: these tests move its slots and freeze its nodes."""
    children, url = start_redis_cluster(3, log_dir=tmp_path)
    try:
        yield children, url
    finally:
        for child in children:
            child.stop()


def _workload(n: int) -> tuple[list, set[str]]:  # type: ignore[type-arg]
    """n events over n/10 tickets in order per ticket; each event is sent again a little later
    (same event id, a marked title) — the copy must be counted as a duplicate."""
    records = []
    for i in range(n):
        event = zendesk_event(f"evt-{i}", i % (n // 10), i)
        records.extend(json_records([event]))
        if i >= 50:
            j = i - 50
            copy = zendesk_event(f"evt-{j}", j % (n // 10), j, title=RESENT.decode())
            records.extend(json_records([copy]))
    return records, {f"evt-{i}" for i in range(n)}


def _check(bootstrap: str, dest: str, ids: set[str], budget: Budget) -> None:
    def every_id(records: list) -> bool:  # type: ignore[type-arg]
        return ids <= {headers_of(m)["router-event-id"] for m in records}

    out = read_all(bootstrap, dest, expect=len(ids), deadline_s=budget.s(120), done=every_id, settle_s=1.0)
    seen = {headers_of(m)["router-event-id"] for m in out}
    assert seen == ids, f"missing {len(ids - seen)}"
    resent = [headers_of(m)["router-event-id"] for m in out if RESENT in m.value()]
    assert not resent, f"{len(resent)} re-sent copies were routed (a lost dedupe decision), e.g. {resent[:3]}"


def _node_ids(url: str) -> list[tuple[str, str]]:
    """(address, node id) of each master."""
    client = redisconn.connect(url)
    try:
        assert isinstance(client, redis.cluster.RedisCluster)
        return [(n.name, redis.utils.str_if_bytes(client.execute_command("CLUSTER MYID", target_nodes=n)))
                for n in client.get_primaries()]
    finally:
        client.close()


def _keys_per_node(url: str, prefix: str) -> list[int]:
    client = redisconn.connect(url)
    try:
        assert isinstance(client, redis.cluster.RedisCluster)
        return [sum(1 for _ in client.scan_iter(match=f"{prefix}*", count=1000, target_nodes=n))
                for n in client.get_primaries()]
    finally:
        client.close()


def test_slots_moving_mid_run_lose_no_record_and_no_decision(settings: Settings, registry_url: str, tmp_path: Path,
                                                             name: str, own_cluster: tuple) -> None:  # type: ignore[type-arg]
    budget = Budget()
    _, url = own_cluster
    bootstrap = settings.kafka_bootstrap_servers or ""
    topo = make_topology(tmp_path, name, {"a": zendesk_spec(name, source=name, destination=f"{name}-pd")})
    prepare_services(settings, registry_url, topo, PARTITIONS)
    records, ids = _workload(15_000)
    most = len(records) * 2 // 3
    produce(bootstrap, topo.source_topic, records[:most])
    worker = WorkerProcess(worker_env(bootstrap, url, registry_url, f"{name}:"), topo.integrations, topo.schemas,
                           name, tmp_path / "worker.log")
    try:
        wait_committed(bootstrap, name, topo.source_topic, PARTITIONS, 500, deadline_s=budget.s(120), procs=[worker])
        (first, first_id), (_, second_id), _ = _node_ids(url)
        # Move a third of the first master's slots to the second, keys and all, while the worker runs.
        moved = subprocess.run(
            ["redis-cli", "--cluster", "reshard", first, "--cluster-from", first_id, "--cluster-to", second_id,
             "--cluster-slots", "1800", "--cluster-yes", "--cluster-pipeline", "100"],
            capture_output=True, text=True, timeout=budget.s(120), check=False)
        assert moved.returncode == 0, moved.stdout[-1000:] + moved.stderr[-1000:]
        produce(bootstrap, topo.source_topic, records[most:])  # and more after: on the new slot map
        wait_committed(bootstrap, name, topo.source_topic, PARTITIONS, len(records), deadline_s=budget.s(180),
                       procs=[worker])
        assert worker.stop() == 0
    finally:
        if worker.proc.poll() is None:
            worker.kill()
    _check(bootstrap, f"delivery.{name}-pd", ids, budget)
    spread = _keys_per_node(url, f"{name}:")
    assert all(n > 0 for n in spread), f"keys on every master, got {spread}"


def test_a_master_frozen_for_ten_seconds_loses_nothing(settings: Settings, registry_url: str, tmp_path: Path,
                                                       name: str, own_cluster: tuple) -> None:  # type: ignore[type-arg]
    budget = Budget()
    children, url = own_cluster
    bootstrap = settings.kafka_bootstrap_servers or ""
    topo = make_topology(tmp_path, name, {"a": zendesk_spec(name, source=name, destination=f"{name}-pd")})
    prepare_services(settings, registry_url, topo, PARTITIONS)
    records, ids = _workload(10_000)
    half = len(records) // 2
    produce(bootstrap, topo.source_topic, records[:half])
    worker = WorkerProcess(worker_env(bootstrap, url, registry_url, f"{name}:"), topo.integrations, topo.schemas,
                           name, tmp_path / "worker.log")
    frozen = children[1].pid
    try:
        wait_committed(bootstrap, name, topo.source_topic, PARTITIONS, 2_000, deadline_s=budget.s(120), procs=[worker])
        os.kill(frozen, signal.SIGSTOP)
        produce(bootstrap, topo.source_topic, records[half:])
        wait_for(lambda: "batch failed" in worker.log.read_text(), deadline_s=budget.s(60),
                 what="the worker to see the frozen master")
        threading.Event().wait(10)  # the fault itself: the master stays frozen 10 s (not a wait for a condition)
        assert worker.proc.poll() is None, "the worker must not exit while a master is frozen"
        os.kill(frozen, signal.SIGCONT)
        wait_committed(bootstrap, name, topo.source_topic, PARTITIONS, len(records), deadline_s=budget.s(180),
                       procs=[worker])
        assert worker.stop() == 0
    finally:
        os.kill(frozen, signal.SIGCONT)
        if worker.proc.poll() is None:
            worker.kill()
    _check(bootstrap, f"delivery.{name}-pd", ids, budget)

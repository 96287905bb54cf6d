"""Health that tells the truth (issue 19): real `router route` and `router deliver` processes whose
own Redis is frozen (SIGSTOP: every call times out) turn /readyz and /healthz red after
ROUTER_FAILING_AFTER_S, count router_batches_failed, and turn green again once Redis is resumed —
with every record delivered exactly once."""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import redis
from prometheus_client.parser import text_string_to_metric_families

from consumers.deliver.payload import idempotency_key
from router.health import workers_key
from router.procs import free_port
from router.settings import Settings
from support.delivering import http_spec, partner_sim, publish
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
from tools.dev.embedded.redis import start_redis

PARTITIONS = 3
FAILING_AFTER_S = "2"


def probe(port: int, path: str) -> tuple[int, dict[str, Any]] | None:
    """(status, JSON body or {}) of a probe, or None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except OSError:
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = {}
    return status, body if isinstance(body, dict) else {}


def failed_batches(port: int, kind: str, reason: str) -> float:
    """router_batches_failed_total{kind, reason} as the worker's /metrics shows it (0 before the first)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "router_batches_failed_total" and s.labels.get("kind") == kind
               and s.labels.get("reason") == reason)


def status_is(port: int, path: str, code: int) -> dict[str, Any] | None:
    answer = probe(port, path)
    return answer[1] if answer is not None and answer[0] == code else None


@contextmanager
def own_redis(tmp_path: Path) -> Iterator[tuple[ChildProcess, str]]:
    """A private redis-server this test may freeze (never the shared one); resumed and stopped at the end."""
    proc, url = start_redis(log=tmp_path / "redis.log")
    try:
        yield proc, url
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.stop()


def frozen_then_resumed(redis_proc: ChildProcess, port: int, kind: str, worker: WorkerProcess, budget: Budget
                        ) -> None:
    """Freeze Redis until the worker's probes are red with reason redis and the counter moved; resume it
    and wait for green."""
    before = failed_batches(port, kind, "redis")
    os.kill(redis_proc.pid, signal.SIGSTOP)
    try:
        body = wait_for(lambda: status_is(port, "/readyz", 503), deadline_s=budget.s(90),
                        what=f"the {kind} worker's /readyz to answer 503 while Redis is frozen")
        assert body["status"] == "failing" and body["reason"] == "redis", body
        assert body["since_s"] >= float(FAILING_AFTER_S)
        assert "redis://" not in orjson.dumps(body).decode(), "a probe never quotes a URL"
        assert status_is(port, "/healthz", 503) is not None, "liveness answers the same verdict"
        assert failed_batches(port, kind, "redis") > before
        assert worker.proc.poll() is None, "the worker must not exit while Redis is frozen"
    finally:
        os.kill(redis_proc.pid, signal.SIGCONT)
    wait_for(lambda: status_is(port, "/readyz", 200), deadline_s=budget.s(90),
             what=f"the {kind} worker's /readyz to answer 200 once Redis is resumed")


def test_route_worker_is_unready_while_its_redis_is_frozen_and_ready_after(
        settings: Settings, registry_url: str, tmp_path: Path, name: str) -> None:
    budget = Budget()
    bootstrap = settings.kafka_bootstrap_servers or ""
    dest = f"delivery.{name}-pd"
    topo = make_topology(tmp_path, name, {"a": zendesk_spec(name, source=name, destination=f"{name}-pd")})
    prepare_services(settings, registry_url, topo, PARTITIONS)
    events = [zendesk_event(f"evt-{i}", i % 200, i) for i in range(4_000)]
    records = json_records(events)
    port = free_port()
    with own_redis(tmp_path) as (redis_proc, redis_url):
        env = {**worker_env(bootstrap, redis_url, registry_url, f"{name}:"),
               "ROUTER_FAILING_AFTER_S": FAILING_AFTER_S, "ROUTER_METRICS_PORT": str(port)}
        worker = WorkerProcess(env, topo.integrations, topo.schemas, name, tmp_path / "worker.log")
        try:
            half = len(records) // 2
            produce(bootstrap, topo.source_topic, records[:half])
            wait_committed(bootstrap, name, topo.source_topic, PARTITIONS, half, deadline_s=budget.s(120),
                           procs=[worker])
            assert status_is(port, "/readyz", 200) == {"status": "ok"}
            produce(bootstrap, topo.source_topic, records[half:])  # batches to fail on
            frozen_then_resumed(redis_proc, port, "route", worker, budget)
            resumed_ms = int(time.time() * 1000)
            wait_committed(bootstrap, name, topo.source_topic, PARTITIONS, len(records), deadline_s=budget.s(120),
                           procs=[worker])
            client = redis.Redis.from_url(redis_url, socket_timeout=5)

            def fresh_row() -> dict[str, Any] | None:
                rows = [orjson.loads(v) for v in client.hgetall(workers_key(f"{name}:")).values()]
                return next((r for r in rows if r["beat_ms"] >= resumed_ms and r["last_success_ms"]), None)

            row = wait_for(fresh_row, deadline_s=budget.s(30), what="the worker's row rewritten after the outage")
            assert row["failing_since_ms"] is None and not row["failing"] and row["group"] == name
            assert row["kind"] == "route" and row["last_success_ms"]
            assert worker.stop() == 0
            assert not client.hgetall(workers_key(f"{name}:")), "a stopped worker removes its row"
            client.close()
        finally:
            if worker.proc.poll() is None:
                worker.kill()
    out = read_all(bootstrap, dest, expect=len(events), deadline_s=budget.s(60), settle_s=1.0)
    ids = [headers_of(m)["router-event-id"] for m in out]
    assert sorted(ids) == sorted(e["event_id"] for e in events), "every record routed exactly once"


def test_delivery_worker_is_unready_while_its_redis_is_frozen_and_ready_after(
        settings: Settings, registry_url: str, tmp_path: Path, name: str) -> None:
    budget = Budget()
    dest = f"{name}-d"
    events = [zendesk_event(f"e{i}", i % 100, i) for i in range(1_000)]
    port = free_port()
    with own_redis(tmp_path) as (redis_proc, redis_url), partner_sim(tmp_path) as partner:
        own = settings.replace(redis_url=redis_url)
        topo = make_topology(tmp_path, name, {"a": http_spec(name, name, dest, f"{partner.url}/v1/{dest}",
                                                             rate="{requests: 100, per: 1s}")})
        publish(own, registry_url, topo, events)
        env = {**worker_env(settings.kafka_bootstrap_servers or "", redis_url, registry_url, f"{name}:"),
               "ROUTER_FAILING_AFTER_S": FAILING_AFTER_S, "ROUTER_METRICS_PORT": str(port)}
        worker = WorkerProcess(env, topo.integrations, topo.schemas, name, tmp_path / "deliver.log", kind="deliver")
        try:
            wait_for(lambda: len(partner.ledger(dest)["accepted"]) >= 100, deadline_s=budget.s(90),
                     what="the backlog flowing")
            assert status_is(port, "/readyz", 200) is not None
            frozen_then_resumed(redis_proc, port, "deliver", worker, budget)
            wait_for(lambda: len(partner.ledger(dest)["accepted"]) == len(events), deadline_s=budget.s(120),
                     what="every record accepted after Redis was resumed")
            assert worker.stop() == 0
        finally:
            if worker.proc.poll() is None:
                worker.kill()
        ledger = partner.ledger(dest)
        assert set(ledger["accepted"]) == {idempotency_key("acme", name, e["event_id"]) for e in events}
        assert set(ledger["accepted"].values()) == {1}, "a record accepted twice"

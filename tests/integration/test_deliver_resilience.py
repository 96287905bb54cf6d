"""The delivery worker's resilience tier (issue 17): real `router deliver` processes against the
partner simulator, hurt under a backlog, each run checked against the partner's ledger — every
record accepted exactly once, in per-entity order — and against its request count per
idempotency key: a record is sent again only when a crash caught it in flight (its delivered key
not yet written), so re-sends are bounded by what can be in flight, never the backlog."""

from __future__ import annotations

import dataclasses
import random
import threading
from pathlib import Path
from typing import Any

from consumers.deliver.payload import idempotency_key
from router.settings import Settings
from support.delivering import Partner, http_spec, partner_sim, publish
from support.routing import make_topology, zendesk_event
from support.services import Budget, wait_for
from support.workers import WorkerProcess, worker_env
from tools.dev.embedded.redis import start_redis

CONCURRENCY = 8  # `router deliver`'s default requests in flight per integration (batch: 1 record each)


def _events(n: int, entities: int) -> list[dict[str, Any]]:
    return [zendesk_event(f"e{i}", i % entities, i) for i in range(n)]


def _check_ledger(partner: Partner, dest: str, name: str, events: list[dict[str, Any]], resends_allowed: int
                  ) -> None:
    ledger = partner.ledger(dest)
    expected = {idempotency_key("acme", name, e["event_id"]) for e in events}
    accepted = ledger["accepted"]
    assert set(accepted) == expected, \
        f"missing {len(expected - set(accepted))}, unexpected {len(set(accepted) - expected)}"
    assert set(accepted.values()) == {1}, "a record accepted twice"
    resent = sum(ledger["duplicates"].values())
    assert resent <= resends_allowed, f"{resent} re-sends; only records in flight at a crash may go twice"
    sequence = {idempotency_key("acme", name, e["event_id"]): e["sequence"] for e in events}
    arrived: dict[str, list[int]] = {}
    for r in ledger["records"]:  # in the order the partner accepted them
        arrived.setdefault(r["record"]["incident_key"], []).append(sequence[r["idempotency_key"]])
    unordered = {k: v for k, v in arrived.items() if v != sorted(v)}
    assert not unordered, f"per-entity order broken: {list(unordered.items())[:1]}"


def test_sigkill_at_five_points_under_a_backlog_delivers_each_record_once(
        settings: Settings, registry_url: str, tmp_path: Path, name: str) -> None:
    budget = Budget()
    dest = f"{name}-d"
    events = _events(1_500, entities=300)
    with partner_sim(tmp_path) as partner:
        topo = make_topology(tmp_path, name, {"a": http_spec(name, name, dest, f"{partner.url}/v1/{dest}",
                                                             rate="{requests: 150, per: 1s}")})
        publish(settings, registry_url, topo, events)
        env = worker_env(settings.kafka_bootstrap_servers or "", settings.redis_url or "", registry_url, f"{name}:")

        def accepted() -> int:
            return len(partner.ledger(dest)["accepted"])

        points = sorted(random.Random(name).sample(range(100, len(events) - 200), 5))
        for i, point in enumerate(points):
            worker = WorkerProcess(env, topo.integrations, topo.schemas, name, tmp_path / f"deliver-{i}.log",
                                   kind="deliver")
            try:
                wait_for(lambda: accepted() >= point or worker.proc.poll() is not None,  # noqa: B023
                         deadline_s=budget.s(90), what=f"{point} records accepted before kill {i}")
                assert worker.proc.poll() is None, worker.log.read_text()[-2000:]
            finally:
                worker.kill()
            assert accepted() < len(events), f"kill {i} came after the backlog was gone: not a mid-run crash"
        last = WorkerProcess(env, topo.integrations, topo.schemas, name, tmp_path / "deliver-last.log", kind="deliver")
        try:
            wait_for(lambda: accepted() == len(events), deadline_s=budget.s(120), what="every record accepted")
        finally:
            assert last.stop() == 0
        _check_ledger(partner, dest, name, events, resends_allowed=len(points) * CONCURRENCY)


def test_redis_stopped_for_ten_seconds_holds_delivery_and_loses_nothing(
        settings: Settings, registry_url: str, tmp_path: Path, name: str) -> None:
    """Redis gone (connection refused, not frozen): delivered keys, rate limits and states cannot be
    read or written, so nothing is sent and nothing is dead-lettered; all of it goes after Redis is back."""
    budget = Budget()
    dest = f"{name}-d"
    events = _events(800, entities=200)
    redis_proc, redis_url = start_redis(log=tmp_path / "redis.log")  # our own Redis: we stop it
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    own = dataclasses.replace(settings, redis_url=redis_url)
    worker = None
    try:
        with partner_sim(tmp_path) as partner:
            topo = make_topology(tmp_path, name, {"a": http_spec(name, name, dest, f"{partner.url}/v1/{dest}",
                                                                 rate="{requests: 100, per: 1s}")})
            publish(own, registry_url, topo, events)
            env = worker_env(settings.kafka_bootstrap_servers or "", redis_url, registry_url, f"{name}:")
            worker = WorkerProcess(env, topo.integrations, topo.schemas, name, tmp_path / "deliver.log",
                                   kind="deliver")
            wait_for(lambda: len(partner.ledger(dest)["accepted"]) >= 100, deadline_s=budget.s(90),
                     what="the backlog flowing")
            redis_proc.stop()
            wait_for(lambda: "Error" in worker.log.read_text() or "unavailable" in worker.log.read_text(),
                     deadline_s=budget.s(30), what="the worker to notice Redis is gone")
            during = len(partner.ledger(dest)["accepted"])
            threading.Event().wait(10)  # the fault itself: Redis stays down 10 s (not a wait for a condition)
            after = len(partner.ledger(dest)["accepted"])
            assert worker.proc.poll() is None, "the worker must not exit while Redis is down"
            assert after - during <= CONCURRENCY, f"{after - during} accepted while Redis was down: only requests " \
                                                  "already in flight may finish"
            redis_proc, _ = start_redis(port, log=tmp_path / "redis-2.log")
            wait_for(lambda: len(partner.ledger(dest)["accepted"]) == len(events), deadline_s=budget.s(120),
                     what="every record after Redis came back")
            assert during < len(events), "Redis went away while records were still waiting"
            assert worker.stop() == 0
            _check_ledger(partner, dest, name, events, resends_allowed=2 * CONCURRENCY)
    finally:
        if worker is not None and worker.proc.poll() is None:
            worker.kill()
        redis_proc.stop()

"""Stop means stop, and a rebalance sends nothing twice (issue 17, D1 and D3): delivery workers
against the partner simulator on the real broker and Redis."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from consumers.deliver.payload import idempotency_key
from router.controls import set_state
from router.settings import Settings
from support.delivering import http_spec, partner_sim, publish, running_deliverer
from support.routing import make_topology, zendesk_event
from support.services import wait_for


def _topo(tmp_path: Path, name: str, url: str, rate: str) -> Any:
    return make_topology(tmp_path, name, {"a": http_spec(name, name, f"{name}-d", url, rate=rate)})


def test_pause_stops_requests_within_a_second_and_resume_sends_the_rest_in_order(
        settings: Settings, registry_url: str, tmp_path: Path, name: str) -> None:
    client = redis.Redis.from_url(settings.redis_url or "")
    dest = f"{name}-d"
    # 150 entities, two versions each: 150 lanes, so many requests are queued when the pause comes.
    events = [zendesk_event(f"e{i}", i % 150, i) for i in range(300)]
    with partner_sim(tmp_path) as partner:
        topo = _topo(tmp_path, name, f"{partner.url}/v1/{dest}", "{requests: 20, per: 1s}")
        publish(settings, registry_url, topo, events)
        try:
            with running_deliverer(settings, registry_url, topo, group=name):
                wait_for(lambda: len(partner.ledger(dest)["accepted"]) >= 20, deadline_s=60, what="a backlog flowing")
                set_state(client, settings.redis_key_prefix, name, "paused")
                paused_at_ms = time.time() * 1000
                threading.Event().wait(3.0)  # the observation window itself: nothing may start after 1 s
                records = partner.ledger(dest)["records"]
                late = [r for r in records if r["at"] > paused_at_ms + 1000]
                assert not late, f"{len(late)} request(s) more than 1 s after the pause"
                held = len(events) - len(partner.ledger(dest)["accepted"])
                assert held > 100, "the pause held the backlog"
                set_state(client, settings.redis_key_prefix, name, "active")
                wait_for(lambda: len(partner.ledger(dest)["accepted"]) == len(events), deadline_s=120,
                         what="every record after the resume")
        finally:
            set_state(client, settings.redis_key_prefix, name, "active")
            client.close()
        ledger = partner.ledger(dest)
    assert set(ledger["accepted"].values()) == {1}
    assert not ledger["duplicates"], f"sent twice: {len(ledger['duplicates'])}"
    sequence = {idempotency_key("acme", name, e["event_id"]): e["sequence"] for e in events}
    arrived: dict[str, list[int]] = {}
    for r in ledger["records"]:  # in the order the partner accepted them
        arrived.setdefault(r["record"]["incident_key"], []).append(sequence[r["idempotency_key"]])
    assert len(arrived) == 150
    unordered = {k: v for k, v in arrived.items() if v != sorted(v)}
    assert not unordered, f"per-entity order broken across the pause: {list(unordered.items())[:1]}"


def test_scaling_out_and_in_during_a_backlog_sends_no_record_twice(settings: Settings, registry_url: str,
                                                                   tmp_path: Path, name: str) -> None:
    dest = f"{name}-d"
    events = [zendesk_event(f"e{i}", i, 1) for i in range(600)]
    with partner_sim(tmp_path) as partner:
        # 10/s: the backlog lasts a minute, longer than a rebalance on a loaded host takes. At 30/s the
        # first worker could drain it before the second had partitions, and the second had no share.
        topo = _topo(tmp_path, name, f"{partner.url}/v1/{dest}", "{requests: 10, per: 1s}")
        publish(settings, registry_url, topo, events)

        def accepted() -> int:
            return len(partner.ledger(dest)["accepted"])

        with running_deliverer(settings, registry_url, topo, group=name):
            wait_for(lambda: accepted() >= 60, deadline_s=60, what="the first worker under way")
            with running_deliverer(settings, registry_url, topo, group=name) as second:
                wait_for(lambda: second.outcomes.totals["delivered"] >= 30, deadline_s=120,
                         what="the second worker delivering its share")
            # The second left (its partitions come back to the first).
            wait_for(lambda: accepted() == len(events), deadline_s=120, what="every record")
        ledger = partner.ledger(dest)
    sent_twice = Counter(ledger["duplicates"])
    assert not sent_twice, f"{len(sent_twice)} record(s) sent twice across the rebalances"
    assert set(ledger["accepted"].values()) == {1}

"""Delivery workers ride out transient faults (issue 14, finding 3): Redis frozen for longer than
the client's socket timeout must slow deliveries, never end the worker or lose a record."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from router.procs import free_port
from router.settings import Settings
from support.delivering import http_spec, partner_sim, publish, running_deliverer
from support.routing import make_topology, zendesk_event
from support.services import start_registry, unique, wait_for
from tools.dev.embedded.redis import start_redis

EVENTS = 300
FROZEN_S = 8  # over the delivery worker's 5 s Redis socket timeout


def test_redis_frozen_for_eight_seconds_slows_delivery_but_loses_nothing(settings: Settings, registry_url: str,
                                                                         tmp_path: Path, name: str) -> None:
    redis_proc, redis_url = start_redis(log=tmp_path / "redis.log")  # ours: we may freeze it
    dest = f"{name}-d"
    try:
        with partner_sim(tmp_path) as partner:
            # One request at a time, rate-limited in Redis: the worker is mid-backlog when Redis freezes.
            topo = make_topology(tmp_path, name, {"a": http_spec(name, name, dest, f"{partner.url}/v1/{dest}",
                                                                 rate="{requests: 100, per: 1s}")})
            publish(settings, registry_url, topo, [zendesk_event(f"e{i}", i % 50, i) for i in range(EVENTS)])

            def accepted() -> dict[str, int]:
                return dict(partner.ledger(dest)["accepted"])

            with running_deliverer(settings.replace(redis_url=redis_url), registry_url, topo, group=name,
                                   state_interval_s=0.2):
                wait_for(lambda: len(accepted()) >= 20, deadline_s=60, what="deliveries before the freeze")
                os.kill(redis_proc.pid, signal.SIGSTOP)
                try:
                    threading.Event().wait(FROZEN_S)  # the fault itself, not a wait for a condition
                finally:
                    os.kill(redis_proc.pid, signal.SIGCONT)
                wait_for(lambda: len(accepted()) >= EVENTS, deadline_s=120,
                         what=f"all {EVENTS} events accepted after Redis thawed")
            ledger = accepted()  # the worker stopped without crashing (running_deliverer checks)
    finally:
        redis_proc.stop()
    assert len(ledger) == EVENTS
    twice = {k: n for k, n in ledger.items() if n != 1}
    assert not twice, f"{len(twice)} event(s) accepted more than once: {list(twice.items())[:3]}"


def test_a_registry_outage_holds_records_instead_of_dead_lettering_them(settings: Settings, tmp_path: Path,
                                                                        name: str) -> None:
    """A schema the registry cannot give *now* (connection refused) is no fault of the record: it
    waits and is delivered once the registry is back; none is dead-lettered as undecodable."""
    bootstrap = settings.kafka_bootstrap_servers or ""
    schemas_topic, port, dest = unique("_schemas"), free_port(), f"{name}-d"
    events = [zendesk_event(f"e{i}", i, 1) for i in range(20)]
    with partner_sim(tmp_path) as partner:
        topo = make_topology(tmp_path, name, {"a": http_spec(name, name, dest, f"{partner.url}/v1/{dest}")})
        with start_registry(bootstrap, tmp_path, schemas_topic, port=port) as url:
            publish(settings, url, topo, events)
        # The registry is down now: the worker has never seen the records' schema.
        with running_deliverer(settings, url, topo, group=name) as worker:
            wait_for(lambda: worker.lanes.size() == len(events), deadline_s=60, what="the records read")
            threading.Event().wait(4)  # the outage itself, several decode retries long
            assert worker.outcomes.totals["dlq"] == 0, "records dead-lettered because the registry was down"
            assert not partner.ledger(dest)["accepted"]
            with start_registry(bootstrap, tmp_path, schemas_topic, port=port):
                wait_for(lambda: len(partner.ledger(dest)["accepted"]) == len(events), deadline_s=60,
                         what="every record once the registry is back")
            assert worker.outcomes.totals["dlq"] == 0

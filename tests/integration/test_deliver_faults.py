"""Delivery workers ride out transient faults (issue 14, finding 3): Redis frozen for longer than
the client's socket timeout must slow deliveries, never end the worker or lose a record."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from router.settings import Settings
from support.delivering import http_spec, partner_sim, publish, running_deliverer
from support.routing import make_topology, zendesk_event
from support.services import wait_for
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

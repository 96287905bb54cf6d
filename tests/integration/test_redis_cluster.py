"""What broke on a Redis Cluster before every kind chose its client and keys for slots (issue 19),
and names that try to move a hash tag: braces in tenants, destinations, integration names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from router import redisconn
from router.controls import read_states, set_state, state_key
from router.keys import scope_key
from router.settings import Settings
from support.delivering import http_spec, partner_sim, publish, running_deliverer
from support.routing import make_topology, zendesk_event
from support.services import wait_for

HOSTILE = ["ac{me}", "}{", "{}", "{", "x}y"]


def test_integrations_cli_shows_pauses_and_resumes_on_either_redis(each_redis: str, tmp_path: Path,
                                                                     name: str) -> None:
    """`router integrations status` reads every state in one MGET; on a cluster that was CROSSSLOT."""
    names = [f"{name}-{i}" for i in range(4)]
    topo = make_topology(tmp_path, name, {
        f"s{i}": http_spec(n, f"{name}-src{i}", f"{n}-d", "http://127.0.0.1:9/") for i, n in enumerate(names)})
    prefix = f"{name}:"
    assert len({redisconn.slot_of(state_key(prefix, n)) for n in names}) > 1, "the states live in several slots"
    env = {**os.environ, "REDIS_URL": each_redis, "ROUTER_REDIS_KEY_PREFIX": prefix}

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "router", "integrations", *args, "--integrations",
                               str(topo.integrations), "--schemas", str(topo.schemas)],
                              capture_output=True, text=True, env=env, timeout=60, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    assert cli("pause", names[1]).split() == [names[1], "paused"]
    states = dict(line.split("\t")[:2] for line in cli("status").splitlines())
    assert states == {n: "paused" if n == names[1] else "active" for n in names}
    assert cli("resume", names[1]).split() == [names[1], "active"]
    assert set(dict(line.split("\t")[:2] for line in cli("status").splitlines()).values()) == {"active"}


def test_integration_states_with_braces_in_their_names_on_the_cluster(redis_cluster_url: str, name: str) -> None:
    """Integration states are one key each, read together across slots: no name can make them collide."""
    prefix = f"{name}:"
    names = [f"{name}{h}" for h in HOSTILE]
    client = redisconn.connect(redis_cluster_url, socket_timeout=5)
    try:
        for i, n in enumerate(names):
            set_state(client, prefix, n, "paused" if i % 2 else "needs_reconnect", reason=n)
        states = read_states(client, prefix, names)
        assert {n: (s.state, s.reason) for n, s in states.items()} == {
            n: ("paused" if i % 2 else "needs_reconnect", n) for i, n in enumerate(names)}
        for n in names:
            set_state(client, prefix, n, "active")
        assert {s.state for s in read_states(client, prefix, names).values()} == {"active"}
    finally:
        client.close()


def test_delivery_on_the_cluster_with_braces_in_tenants_and_a_per_tenant_rate_limit(
        settings: Settings, redis_cluster_url: str, registry_url: str, tmp_path: Path, name: str) -> None:
    """Each tenant's rate-limit cell and hold (three keys one script touches) share a slot, whatever
    braces the tenant's name holds; a 429 with Retry-After holds that tenant on the cluster too."""
    settings = settings.replace(redis_url=redis_cluster_url, redis_key_prefix=f"{name}:")
    dest = f"{name}-d"
    with partner_sim(tmp_path) as partner:
        partner.rules({"destination": dest, "match": {}, "status": 429, "times": 1, "retry_after": "1"})
        topo = make_topology(tmp_path, name, {"a": http_spec(
            name, name, dest, f"{partner.url}/v1/{dest}", rate="{requests: 20, per: 1s, scope: tenant}")})
        for i, tenant in enumerate(HOSTILE):
            publish(settings, registry_url, topo, [zendesk_event(f"e{i}", i, 1)], tenant=tenant)
        with running_deliverer(settings, registry_url, topo, group=name) as worker:
            wait_for(lambda: worker.outcomes.totals["delivered"] == len(HOSTILE), deadline_s=60,
                     what="every tenant's record delivered")
            assert worker.outcomes.totals["attempt_4xx"] == 1, "the 429 was retried, not dead-lettered"
        assert sorted(partner.ledger(dest)["accepted"].values()) == [1] * len(HOSTILE)
    client = redisconn.connect(redis_cluster_url, socket_timeout=5)
    try:
        # The one 429 cut the rate of the tenant it answered, in that tenant's tagged cell (the
        # cells' TATs expire within about a second: the deliveries show the script ran).
        cut = [t for t in HOSTILE if client.exists(f"{scope_key(settings.redis_key_prefix, dest, t, True)}:adapt")]
        assert len(cut) == 1, cut
        index = {m.decode() for m in client.smembers(f"{settings.redis_key_prefix}health:index")}  # type: ignore[union-attr]
        assert index == {f"{name}|{tenant}" for tenant in HOSTILE}, "health rows written on the cluster"
    finally:
        client.close()

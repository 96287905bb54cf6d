"""Disconnect purges the tenant's Redis state for the integration, and a reconnect starts clean
(docs/connections.md, DESIGN §9): on a standalone Redis and on a Redis Cluster."""

from __future__ import annotations

from pathlib import Path

from router import redisconn
from router.connections.purge import affected, purge
from router.health import row_key
from router.settings import Settings
from support.routing import (
    headers_of,
    json_records,
    make_topology,
    prepare_services,
    produce,
    read_all,
    running_worker,
    zendesk_event,
    zendesk_spec,
)
from support.services import wait_for
from support.workers import wait_committed


def _keys(client: redisconn.Sync, prefix: str, tenant: str) -> set[str]:
    """Every key of ``tenant`` under ``prefix`` (on every master of a cluster)."""
    return {k.decode() for k in client.scan_iter(match=f"{prefix}*", count=1000) if f":{tenant}:" in k.decode()}


def test_disconnect_purges_one_tenants_state_and_a_reconnect_starts_clean(
        settings_each_redis: Settings, registry_url: str, tmp_path: Path, name: str) -> None:
    settings = settings_each_redis
    bootstrap = settings.kafka_bootstrap_servers or ""
    prefix = f"{name}:"
    topo = make_topology(tmp_path, name, {"a": zendesk_spec(name, source=name, destination=f"{name}-pd")})
    prepare_services(settings, registry_url, topo)
    events = [zendesk_event(f"e{i}", i, 1) for i in range(5)]
    both = json_records(events, tenant="acme") + json_records(events, tenant="globex")
    produce(bootstrap, topo.source_topic, both)
    client = redisconn.connect(settings.redis_url or "")
    try:
        with running_worker(settings, registry_url, topo, group=name, prefix=prefix):
            wait_committed(bootstrap, name, topo.source_topic, 3, 10, deadline_s=90)
        acme, globex = _keys(client, prefix, "acme"), _keys(client, prefix, "globex")
        assert len(acme) == 10 and len(globex) == 10, "a dedupe claim and a watermark per event and tenant"
        client.set(row_key(prefix, name, "acme"), b"{}")
        client.set(row_key(prefix, name, "globex"), b"{}")

        removed = purge(client, prefix, "acme", affected(topo.catalog.integrations, name))

        assert removed == 11, "10 claims and watermarks, and the health row"
        assert _keys(client, prefix, "acme") == set() and not client.exists(row_key(prefix, name, "acme"))
        assert _keys(client, prefix, "globex") == globex and client.exists(row_key(prefix, name, "globex")), \
            "the other tenant's state is untouched"
        # The same events again: acme's are routed anew (clean), globex's are duplicates.
        produce(bootstrap, topo.source_topic, both)
        with running_worker(settings, registry_url, topo, group=name, prefix=prefix) as worker:
            wait_committed(bootstrap, name, topo.source_topic, 3, 20, deadline_s=90)
            wait_for(lambda: worker.outcomes.totals["duplicate"] == 5, deadline_s=30, what="globex deduplicated")
        out = read_all(bootstrap, f"delivery.{name}-pd", expect=15, deadline_s=60, settle_s=1.0)
        tenants = sorted(headers_of(m)["router-tenant"] for m in out)
        assert tenants == ["acme"] * 10 + ["globex"] * 5, "acme routed twice (reconnected), globex once"
    finally:
        client.close()

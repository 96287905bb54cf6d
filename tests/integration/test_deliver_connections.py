"""Delivery with each tenant's own connection (docs/connections.md, DESIGN §9): its URL and
credentials; one tenant held alone while the integration's other tenants keep flowing."""

from __future__ import annotations

import time
from pathlib import Path

from consumers.deliver.tenancy import Tenancy
from router import codes
from router.connections import changes
from router.connections.model import Bearer, Connection
from router.connections.store import ConnectionWriter
from router.settings import Secret, Settings
from support.delivering import http_spec, partner_sim, publish, running_deliverer, tenancy_for
from support.routing import headers_of, make_topology, read_all, zendesk_event
from support.services import wait_for

CONNECTION = ("{credentials: [bearer], "
              "settings: {type: object, required: [account], properties: {account: {type: string}}}}")


def _connect(writer: ConnectionWriter, tenant: str, integration: str, account: str, token: str) -> None:
    writer.put(changes.create(None, tenant, integration, now_ms=int(time.time() * 1000),
                              settings={"account": account}, credentials=Bearer(Secret(token))))


def _state(tenancy: Tenancy, tenant: str, integration: str) -> str:
    found = tenancy.store.get(tenant, integration)
    return found.state if found is not None else "none"


def test_each_tenant_goes_out_with_its_own_url_and_credentials_and_is_held_alone(
        settings: Settings, registry_url: str, tmp_path: Path, name: str) -> None:
    with partner_sim(tmp_path) as partner, tenancy_for(settings, f"_connections.{name}") as (tenancy, writer):
        # Each tenant has its own account at the partner; acme's lacks a permission, globex's works.
        partner.accounts({"acme": "acme-token", "globex": "globex-token"})
        partner.rules({"destination": f"{name}-acme", "account": "acme", "match": {}, "status": 403})
        spec = http_spec(name, name, f"{name}-d", f"{partner.url}/v1/{{settings.account}}", connection=CONNECTION)
        topo = make_topology(tmp_path, name, {"a": spec})
        _connect(writer, "acme", name, f"{name}-acme", "acme-token")
        _connect(writer, "globex", name, f"{name}-globex", "globex-token")
        wait_for(lambda: tenancy.store.get("globex", name) is not None, deadline_s=30, what="both connections read")
        publish(settings, registry_url, topo, [zendesk_event(f"a{i}", i, 1) for i in range(5)], tenant="acme")
        publish(settings, registry_url, topo, [zendesk_event(f"g{i}", i, 1) for i in range(5)], tenant="globex")
        with running_deliverer(settings, registry_url, topo, group=name, tenancy=tenancy,
                               state_interval_s=0.2) as worker:
            wait_for(lambda: _state(tenancy, "acme", name) == "needs_reconnect", deadline_s=60,
                     what="acme's connection needs_reconnect on a 403")
            connection = tenancy.store.get("acme", name)
            assert connection is not None and "403" in connection.state_reason
            assert _state(tenancy, "globex", name) == "active", "globex is not held with acme"
            # globex keeps flowing while acme is held, including records written after the hold.
            publish(settings, registry_url, topo, [zendesk_event(f"g{i}", i, 1) for i in range(5, 10)],
                    tenant="globex")
            wait_for(lambda: len(partner.ledger(f"{name}-globex")["accepted"]) == 10, deadline_s=60,
                     what="all of globex's records delivered")
            assert partner.ledger(f"{name}-acme")["accepted"] == {}, "acme's records were refused, not sent elsewhere"
            wait_for(lambda: worker.lanes.size() == 5, deadline_s=30, what="acme's 5 records held")
            assert worker.outcomes.totals["dlq"] == 0, "a hold is not a dead letter"
            # The permission is granted and a person reconnects acme: its held records go out.
            partner.call("DELETE", "/_control/rules")
            writer.put(changes.update(tenancy.store.get("acme", name), "acme", name,
                                      now_ms=int(time.time() * 1000), state="active"))
            wait_for(lambda: len(partner.ledger(f"{name}-acme")["accepted"]) == 5, deadline_s=60,
                     what="acme's held records delivered after the reconnect")
        # Each went out once, to its tenant's own URL with its tenant's own token.
        for tenant, count in (("acme", 5), ("globex", 10)):
            ledger = partner.ledger(f"{name}-{tenant}")
            assert sorted(ledger["accepted"].values()) == [1] * count, f"{tenant}: none lost, none twice"
            assert {r["record"]["incident_key"].split(":")[0] for r in ledger["records"]} == {tenant}
            assert {r["account"] for r in ledger["records"]} == {tenant}, "sent with the tenant's own credentials"


def test_a_tenant_without_a_connection_is_dead_lettered_not_held(settings: Settings, registry_url: str,
                                                                 tmp_path: Path, name: str) -> None:
    with partner_sim(tmp_path) as partner, tenancy_for(settings, f"_connections.{name}") as (tenancy, writer):
        spec = http_spec(name, name, f"{name}-d", f"{partner.url}/v1/{{settings.account}}", connection=CONNECTION)
        topo = make_topology(tmp_path, name, {"a": spec})
        _connect(writer, "acme", name, f"{name}-acme", "acme-token")
        wait_for(lambda: tenancy.store.get("acme", name) is not None, deadline_s=30, what="acme's connection read")
        publish(settings, registry_url, topo, [zendesk_event("e1", 1, 1)], tenant="initech")
        publish(settings, registry_url, topo, [zendesk_event("e2", 2, 1)], tenant="acme")
        with running_deliverer(settings, registry_url, topo, group=name, tenancy=tenancy) as worker:
            wait_for(lambda: worker.outcomes.totals["dlq"] == 1 and worker.outcomes.totals["delivered"] == 1,
                     deadline_s=60, what="initech's record dead-lettered, acme's delivered")
        dead = read_all(settings.kafka_bootstrap_servers or "", f"delivery.{name}-d.dlq", expect=1)
        headers = headers_of(dead[0])
        assert headers["router-error-code"] == codes.DELIVER_NO_CONNECTION
        assert "initech" in headers["router-error-message"]
        assert len(partner.ledger(f"{name}-acme")["accepted"]) == 1


def test_a_connection_its_spec_cannot_use_goes_needs_reconnect(settings: Settings, registry_url: str,
                                                                tmp_path: Path, name: str) -> None:
    with partner_sim(tmp_path) as partner, tenancy_for(settings, f"_connections.{name}") as (tenancy, writer):
        spec = http_spec(name, name, f"{name}-d", f"{partner.url}/v1/{{settings.account}}", connection=CONNECTION)
        topo = make_topology(tmp_path, name, {"a": spec})
        # Settings without the account the URL needs: nothing can be sent for this tenant.
        writer.put(Connection("acme", name, settings={}, credentials=Bearer(Secret("t")),
                              created_at_ms=1, updated_at_ms=1))
        wait_for(lambda: tenancy.store.get("acme", name) is not None, deadline_s=30, what="the connection read")
        publish(settings, registry_url, topo, [zendesk_event("e1", 1, 1)], tenant="acme")
        with running_deliverer(settings, registry_url, topo, group=name, tenancy=tenancy,
                               state_interval_s=0.2) as worker:
            wait_for(lambda: _state(tenancy, "acme", name) == "needs_reconnect", deadline_s=60,
                     what="needs_reconnect for unusable settings")
            found = tenancy.store.get("acme", name)
            assert found is not None and "account" in found.state_reason
            wait_for(lambda: worker.lanes.size() == 1, deadline_s=30, what="the record held")
            assert worker.outcomes.totals["dlq"] == 0, "held, not dead-lettered"
        assert partner.ledger()["requests"] == 0


def test_a_disconnected_tenant_is_held_or_dead_lettered_as_the_spec_says(settings: Settings, registry_url: str,
                                                                         tmp_path: Path, name: str) -> None:
    with partner_sim(tmp_path) as partner, tenancy_for(settings, f"_connections.{name}") as (tenancy, writer):
        dlq_use = CONNECTION[:-1] + ", on_disconnect: dlq}"
        spec = http_spec(name, name, f"{name}-d", f"{partner.url}/v1/{{settings.account}}", connection=dlq_use)
        topo = make_topology(tmp_path, name, {"a": spec})
        _connect(writer, "acme", name, f"{name}-acme", "acme-token")
        writer.put(changes.disconnect(_wait_read(tenancy, "acme", name), "acme", name,
                                      now_ms=int(time.time() * 1000), reason="the tenant left"))
        wait_for(lambda: _state(tenancy, "acme", name) == "disconnected", deadline_s=30, what="the disconnect read")
        publish(settings, registry_url, topo, [zendesk_event("e1", 1, 1)], tenant="acme")
        with running_deliverer(settings, registry_url, topo, group=name, tenancy=tenancy) as worker:
            wait_for(lambda: worker.outcomes.totals["dlq"] == 1, deadline_s=60, what="the dead letter")
        headers = headers_of(read_all(settings.kafka_bootstrap_servers or "", f"delivery.{name}-d.dlq", expect=1)[0])
        assert headers["router-error-code"] == codes.DELIVER_DISCONNECTED
        assert "the tenant left" in headers["router-error-message"]
        assert partner.ledger()["requests"] == 0


def _wait_read(tenancy: Tenancy, tenant: str, integration: str) -> Connection:
    return wait_for(lambda: tenancy.store.get(tenant, integration), deadline_s=30, what=f"{tenant}'s connection read")

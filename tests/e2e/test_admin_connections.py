"""An admin connects tenants from the admin page through the partner's consent page, in Chromium
(issue 18, item 8): records go out with each tenant's token; the partner revoking acme's grant
shows acme alone as needs_reconnect while globex goes on; Reconnect from the page delivers what
was held — none lost, none twice; Disconnect from the page revokes the tokens at the partner."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

from router.connections.keyring import KEY_ENV, KeyRing, generate_key
from router.connections.store import TOPIC_ENV
from router.settings import Settings
from support.delivering import Partner, http_spec, partner_sim, publish, running_deliverer, tenancy_for
from support.routing import make_topology, zendesk_event
from support.services import wait_for
from tests.e2e.test_admin_page import CHROMIUM, CHROMIUM_ARGS, EXPECT_S, TOKEN, admin_process

CLIENT_SECRET = "e2e-admin-client-secret-DO-NOT-PRINT"


def _consent(page: Page, tenant: str, name: str) -> None:
    """On the partner's consent page: the account is the tenant; Allow; back on the admin page, connected."""
    expect(page.get_by_label("Account")).to_have_value(tenant, timeout=EXPECT_S)
    page.get_by_role("button", name="Allow").click()
    expect(page.get_by_test_id("flash")).to_contain_text(f"connected {tenant}/{name}", timeout=EXPECT_S)
    expect(page.get_by_test_id(f"conn-{tenant}-{name}").get_by_test_id("conn-state")).to_have_text(
        "active", timeout=EXPECT_S)


def _connect(page: Page, url: str, tenant: str, name: str) -> None:
    page.goto(f"{url}/")
    page.get_by_test_id("connect-tenant").fill(tenant)
    page.get_by_test_id("connect-integration").select_option(name)
    page.get_by_test_id("connect").click()
    _consent(page, tenant, name)


def _state_shown(page: Page, url: str, tenant: str, name: str) -> str:
    page.goto(f"{url}/")
    return page.get_by_test_id(f"conn-{tenant}-{name}").get_by_test_id("conn-state").inner_text()


def _accepted(partner: Partner, dest: str) -> dict[str, int]:
    return dict(partner.ledger(dest)["accepted"])


def test_connect_revoke_reconnect_and_disconnect_from_the_admin_page(settings: Settings, registry_url: str,
                                                                     tmp_path: Path, name: str) -> None:
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: apt-get install -y chromium (Debian package)"
    key = generate_key()
    topic = f"_connections.{name}"
    dest = f"{name}-d"
    with partner_sim(tmp_path, "--require-token", "--client-id", "router-e2e", "--client-secret",
                     CLIENT_SECRET) as partner:
        use = (f"{{credentials: [oauth2_authorization_code], authorize_url: '{partner.url}/oauth/authorize', "
               f"token_url: '{partner.url}/oauth/token', revoke_url: '{partner.url}/oauth/revoke', "
               "client_id: router-e2e, client_secret: 'env:E2E_SECRET'}")
        topo = make_topology(tmp_path, name, {"a": http_spec(name, name, dest, f"{partner.url}/v1/{dest}",
                                                             connection=use)})
        env = {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "", "REDIS_URL": settings.redis_url or "",
               "ROUTER_REDIS_KEY_PREFIX": settings.redis_key_prefix, "ROUTER_ADMIN_TOKEN": TOKEN, KEY_ENV: key,
               TOPIC_ENV: topic, "E2E_SECRET": CLIENT_SECRET}
        with admin_process(tmp_path, env, "--integrations", str(topo.integrations), "--schemas",
                           str(topo.schemas)) as url, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(f"{url}/login?token={TOKEN}")
                for tenant in ("acme", "globex"):
                    _connect(page, url, tenant, name)
                assert CLIENT_SECRET not in page.content()

                os.environ["E2E_SECRET"] = CLIENT_SECRET  # the worker resolves the spec's reference
                try:
                    with tenancy_for(settings, topic, KeyRing.parse(key, KEY_ENV)) as (tenancy, _writer):
                        wait_for(lambda: tenancy.store.get("globex", name), deadline_s=30, what="both connections")
                        publish(settings, registry_url, topo, [zendesk_event("a1", 1, 1)], tenant="acme")
                        publish(settings, registry_url, topo, [zendesk_event("g1", 1, 1)], tenant="globex")
                        with running_deliverer(settings, registry_url, topo, group=name, tenancy=tenancy,
                                               state_interval_s=0.2):
                            wait_for(lambda: len(_accepted(partner, dest)) == 2, deadline_s=60,
                                     what="both tenants delivered")
                            accounts = {r["record"]["incident_key"].split(":")[0]: r["account"]
                                        for r in partner.ledger(dest)["records"]}
                            assert accounts == {"acme": "acme", "globex": "globex"}, "each with its own token"

                            # The partner revokes acme's grant: acme alone needs a reconnect.
                            partner.revoke_grant("acme")
                            partner.call("POST", "/_control/expire_tokens")
                            publish(settings, registry_url, topo, [zendesk_event("a2", 2, 1)], tenant="acme")
                            publish(settings, registry_url, topo, [zendesk_event("g2", 2, 1)], tenant="globex")
                            wait_for(lambda: _state_shown(page, url, "acme", name) == "needs_reconnect",
                                     deadline_s=60, what="the page showing acme needs_reconnect")
                            wait_for(lambda: len(_accepted(partner, dest)) == 3, deadline_s=60,
                                     what="globex's record delivered")
                            assert _state_shown(page, url, "globex", name) == "active"

                            # Reconnect through the browser: acme's held record goes out.
                            page.get_by_test_id(f"reconnect-acme-{name}").click()
                            _consent(page, "acme", name)
                            wait_for(lambda: len(_accepted(partner, dest)) == 4, deadline_s=60,
                                     what="acme's held record delivered")
                        assert sorted(_accepted(partner, dest).values()) == [1] * 4, "none lost, none twice"
                finally:
                    del os.environ["E2E_SECRET"]

                # Disconnect from the page: the partner sees the grant revoked.
                before = partner.ledger()["revocations"]
                page.goto(f"{url}/")
                page.get_by_test_id(f"disconnect-globex-{name}").click()
                expect(page.get_by_test_id("flash")).to_contain_text("tokens revoked at the partner",
                                                                     timeout=EXPECT_S)
                expect(page.get_by_test_id(f"conn-globex-{name}").get_by_test_id("conn-state")).to_have_text(
                    "disconnected", timeout=EXPECT_S)
                assert partner.ledger()["revocations"] > before
                assert CLIENT_SECRET not in page.content()
            finally:
                browser.close()

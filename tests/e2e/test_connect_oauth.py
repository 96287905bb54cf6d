"""A tenant connects its own partner account through the partner's consent page, in Chromium
(issue 18): `router connections connect` runs the authorization-code flow with PKCE; records go
out with that tenant's token; a token refused after expiry is refreshed (rotation) and saved; the
partner revoking one tenant's grant holds that tenant alone; a reconnect delivers what was held —
none lost, none twice."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

from playwright.sync_api import Browser, expect, sync_playwright

from router.connections.keyring import KEY_ENV, KeyRing, generate_key
from router.connections.model import OAuth2AuthorizationCode
from router.settings import Settings
from support.delivering import Partner, http_spec, partner_sim, publish, running_deliverer, tenancy_for
from support.routing import make_topology, zendesk_event
from support.services import wait_for
from tests.e2e.test_admin_page import CHROMIUM, CHROMIUM_ARGS, EXPECT_S

ROOT = Path(__file__).resolve().parents[2]
CLIENT_SECRET = "e2e-client-secret-DO-NOT-PRINT"


def _connect(browser: Browser, env: dict[str, str], tenant: str, integration: str, dirs: list[str]) -> str:
    """Run `router connections connect` and consent as ``tenant``'s person would; return its output."""
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen([sys.executable, "-m", "router", "connections", "connect", tenant, integration,
                           "--no-browser", "--login-hint", tenant, *dirs], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:  # pipes closed at exit

        def read() -> None:
            for line in proc.stdout or []:
                lines.put(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            url = wait_for(lambda: next((line.strip() for line in iter_lines(lines) if line.startswith("http")),
                                        None), deadline_s=60, what="the authorize URL")
            page = browser.new_page()
            try:
                page.goto(url)
                expect(page.get_by_label("Account")).to_have_value(tenant, timeout=EXPECT_S)
                page.get_by_role("button", name="Allow").click()
                expect(page.get_by_text("Connected. You can close this window.")).to_be_visible(timeout=EXPECT_S)
            finally:
                page.close()
            assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        reader.join(10)
    out = "".join(iter_lines(lines))
    assert CLIENT_SECRET not in out
    return out


def iter_lines(lines: queue.Queue[str]) -> list[str]:
    """What the reader thread has collected so far (kept for the next call too)."""
    got = []
    while True:
        try:
            got.append(lines.get_nowait())
        except queue.Empty:
            break
    for line in got:
        lines.put(line)
    return got


def _accepted(partner: Partner, dest: str) -> dict[str, int]:
    return dict(partner.ledger(dest)["accepted"])


def test_connect_through_consent_refresh_revoke_and_reconnect(settings: Settings, registry_url: str, tmp_path: Path,
                                                              name: str) -> None:
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: apt-get install -y chromium (Debian package)"
    key = generate_key()
    topic = f"_connections.{name}"
    with partner_sim(tmp_path, "--require-token", "--client-id", "router-e2e", "--client-secret",
                     CLIENT_SECRET) as partner:
        use = (f"{{credentials: [oauth2_authorization_code], authorize_url: '{partner.url}/oauth/authorize', "
               f"token_url: '{partner.url}/oauth/token', revoke_url: '{partner.url}/oauth/revoke', "
               "client_id: router-e2e, client_secret: 'env:E2E_SECRET'}")
        topo = make_topology(tmp_path, name, {"a": http_spec(name, name, f"{name}-d", f"{partner.url}/v1/{name}-d",
                                                             connection=use)})
        dirs = ["--integrations", str(topo.integrations), "--schemas", str(topo.schemas)]
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "", KEY_ENV: key,
               "ROUTER_CONNECTIONS_TOPIC": topic, "E2E_SECRET": CLIENT_SECRET}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for tenant in ("acme", "globex"):
                    assert f"connected {tenant}/{name} (active)" in _connect(browser, env, tenant, name, dirs)
                os.environ["E2E_SECRET"] = CLIENT_SECRET  # the worker resolves the spec's reference
                try:
                    _deliver_refresh_revoke(settings, registry_url, topo, partner, name, key, topic,
                                            lambda: _connect(browser, env, "acme", name, dirs))
                finally:
                    del os.environ["E2E_SECRET"]
                # Disconnect: the partner sees the grant revoked; the tokens are gone here.
                done = subprocess.run([sys.executable, "-m", "router", "connections", "disconnect", "globex", name,
                                       *dirs], cwd=ROOT, env=env, capture_output=True, text=True, timeout=90,
                                      check=False)
                assert done.returncode == 0, done.stderr
                assert "tokens revoked at the partner" in done.stdout and CLIENT_SECRET not in done.stdout
                assert partner.ledger()["revocations"] >= 1
            finally:
                browser.close()


def _deliver_refresh_revoke(settings: Settings, registry_url: str, topo, partner: Partner,  # type: ignore[no-untyped-def]
                            name: str, key: str, topic: str, reconnect) -> None:  # type: ignore[no-untyped-def]
    dest = f"{name}-d"
    with tenancy_for(settings, topic, KeyRing.parse(key, KEY_ENV)) as (tenancy, _writer):
        wait_for(lambda: tenancy.store.get("globex", name), deadline_s=30, what="both connections read")
        publish(settings, registry_url, topo, [zendesk_event("a1", 1, 1)], tenant="acme")
        publish(settings, registry_url, topo, [zendesk_event("g1", 1, 1)], tenant="globex")
        with running_deliverer(settings, registry_url, topo, group=name, tenancy=tenancy, state_interval_s=0.2):
            wait_for(lambda: len(_accepted(partner, dest)) == 2, deadline_s=60, what="both tenants delivered")
            records = partner.ledger(dest)["records"]
            accounts = {r["record"]["incident_key"].split(":")[0]: r["account"] for r in records}
            assert accounts == {"acme": "acme", "globex": "globex"}, "each with its own tenant's token"

            # Every token expires: the next requests are refused once, refreshed (rotated), saved.
            before = _refresh_token(tenancy, "acme", name)
            partner.call("POST", "/_control/expire_tokens")
            publish(settings, registry_url, topo, [zendesk_event("a2", 2, 1)], tenant="acme")
            wait_for(lambda: len(_accepted(partner, dest)) == 3, deadline_s=60, what="delivery after a refresh")
            wait_for(lambda: _refresh_token(tenancy, "acme", name) not in (before, None), deadline_s=30,
                     what="the rotated refresh token saved to the connection")

            # The partner revokes acme's grant: acme alone goes needs_reconnect, globex goes on.
            partner.revoke_grant("acme")
            publish(settings, registry_url, topo, [zendesk_event("a3", 3, 1)], tenant="acme")
            publish(settings, registry_url, topo, [zendesk_event("g2", 2, 1)], tenant="globex")
            wait_for(lambda: _state(tenancy, "acme", name) == "needs_reconnect", deadline_s=60,
                     what="acme needs_reconnect")
            wait_for(lambda: len(_accepted(partner, dest)) == 4, deadline_s=60, what="globex's record delivered")
            assert _state(tenancy, "globex", name) == "active"

            reconnect()  # acme's person consents again
            wait_for(lambda: len(_accepted(partner, dest)) == 5, deadline_s=60, what="acme's held record delivered")
        assert sorted(_accepted(partner, dest).values()) == [1] * 5, "none lost, none twice"


def _state(tenancy, tenant: str, integration: str) -> str:  # type: ignore[no-untyped-def]
    found = tenancy.store.get(tenant, integration)
    return found.state if found is not None else "none"


def _refresh_token(tenancy, tenant: str, integration: str) -> str | None:  # type: ignore[no-untyped-def]
    found = tenancy.store.get(tenant, integration)
    credentials = found.credentials if found is not None else None
    if isinstance(credentials, OAuth2AuthorizationCode) and credentials.refresh_token is not None:
        return credentials.refresh_token.reveal()
    return None


"""The health page in headless Chromium after real traffic where one integration fails.

A route worker and a delivery worker run two integrations on one source topic: one delivers to
the partner simulator, the other has a mapping bug (its required title comes from a field the
events do not have), so every event lands in the DLQ with ``map.required_missing``.
`router admin` runs as a process, as a user starts it; Debian's ``chromium`` is driven by
Playwright through its executable path (``playwright install`` is never needed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import redis
from playwright.sync_api import expect, sync_playwright

from router.controls import read_states
from router.health import row_key
from router.settings import Settings
from support.delivering import http_spec, partner_sim, running_deliverer
from support.routing import json_records, make_topology, produce, running_worker, zendesk_event
from support.services import wait_for

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TOKEN = "e2e-admin-token-5f0c2a-0123456789abcdef"
EXPECT_S = 30_000  # ms, for Playwright's expect


@contextmanager
def admin_process(tmp_path: Path, env: dict[str, str], *args: str) -> Iterator[str]:
    """`python -m router admin --port 0 ...`; yield its URL from the READY line; SIGTERM must stop it cleanly."""
    out, err = tmp_path / "admin.out", tmp_path / "admin.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "router", "admin", "--port", "0", *args], cwd=ROOT,
                                stdout=stdout, stderr=stderr, env={**os.environ, **env})
    try:
        wait_for(lambda: out.read_text().strip() or proc.poll() is not None, deadline_s=60,
                 what="router admin to print READY")
        lines = out.read_text().splitlines()
        assert proc.poll() is None, err.read_text()[-3000:]
        assert len(lines) == 1 and lines[0].startswith("READY admin=http://127.0.0.1:"), lines
        yield lines[0].split("=", 1)[1]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, err.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def api_rows(url: str) -> dict[str, dict[str, Any]]:
    req = urllib.request.Request(f"{url}/api/health", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return {f"{r['integration']}|{r['tenant']}": r for r in orjson.loads(resp.read())["rows"]}


def test_failing_row_shows_its_code_and_pause_works(settings: Settings, registry_url: str, tmp_path: Path,
                                                    name: str) -> None:
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: apt-get install -y chromium (Debian package)"
    prefix = f"{name}:"
    settings = settings.replace(redis_key_prefix=prefix)
    bootstrap = settings.kafka_bootstrap_servers or ""
    good, bad = f"{name}-ok", f"{name}-bad"
    client = redis.Redis.from_url(settings.redis_url or "", decode_responses=True)
    with partner_sim(tmp_path) as partner:
        bad_spec = http_spec(bad, name, f"{name}-d2", f"{partner.url}/v1/{name}-d2").replace(
            "from: data.ticket.title", "from: data.ticket.subject")  # the mapping bug
        topo = make_topology(tmp_path, name, {
            "ok": http_spec(good, name, f"{name}-d1", f"{partner.url}/v1/{name}-d1"),
            "bad": bad_spec,
        })
        with running_worker(settings, registry_url, topo, group=f"{name}-route", prefix=prefix) as route, \
                running_deliverer(settings, registry_url, topo, group=f"{name}-deliver"):
            route.finisher.health_client = redis.Redis.from_url(settings.redis_url or "")
            events = [zendesk_event(f"evt-{i}", 100 + i, 1) for i in range(3)]
            produce(bootstrap, topo.source_topic, json_records(events, tenant="acme"))
            wait_for(lambda: client.hget(row_key(prefix, good, "acme"), "last_success_ms")
                     and client.hget(row_key(prefix, bad, "acme"), "last_error_code") == "map.required_missing",
                     deadline_s=90, what="a delivery of the good integration and a mapping failure of the bad one")

            env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "REDIS_URL": settings.redis_url or "",
                   "ROUTER_REDIS_KEY_PREFIX": prefix, "ROUTER_ADMIN_TOKEN": TOKEN}
            with admin_process(tmp_path, env, "--integrations", str(topo.integrations), "--schemas",
                               str(topo.schemas), "--route-group", f"{name}-route",
                               "--deliver-group", f"{name}-deliver") as url:
                wait_for(lambda: (api_rows(url)[f"{bad}|acme"].get("dlq") or {}).get("depth") == 3,
                         deadline_s=30, what="the bad integration's 3 DLQ records counted")
                _drive_the_page(url, good, bad, tmp_path)
                assert read_states(client, prefix, [bad])[bad].state == "paused"
                assert read_states(client, prefix, [good])[good].state == "active"
    client.close()


def _drive_the_page(url: str, good: str, bad: str, tmp_path: Path) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.goto(f"{url}/")
            expect(page.get_by_label("Admin token (ROUTER_ADMIN_TOKEN)")).to_be_visible(timeout=EXPECT_S)
            page.goto(f"{url}/login?token={TOKEN}")
            expect(page).to_have_url(f"{url}/", timeout=EXPECT_S)

            bad_row = page.get_by_test_id(f"row-{bad}-acme")
            good_row = page.get_by_test_id(f"row-{good}-acme")
            expect(bad_row.get_by_test_id("error-code")).to_have_text("map.required_missing", timeout=EXPECT_S)
            expect(bad_row.get_by_test_id("dlq-depth")).to_contain_text("3", timeout=EXPECT_S)
            expect(good_row.get_by_test_id("error-code")).to_have_count(0)
            expect(good_row.get_by_test_id("state")).to_have_text("active")
            expect(good_row.get_by_test_id("success-rate")).to_contain_text("100%")

            bad_row.get_by_test_id(f"pause-{bad}").click()
            expect(page.get_by_test_id("flash")).to_contain_text(f"Paused {bad}.", timeout=EXPECT_S)
            bad_row = page.get_by_test_id(f"row-{bad}-acme")
            expect(bad_row.get_by_test_id("state")).to_have_text("paused", timeout=EXPECT_S)
            expect(bad_row.get_by_test_id(f"resume-{bad}")).to_be_visible()
            expect(good_row.get_by_test_id("state")).to_have_text("active")
            page.screenshot(path=str(tmp_path / "admin-page.png"), full_page=True)
        finally:
            browser.close()


def test_without_a_token_it_refuses_to_start_unless_dev_token(settings: Settings, tmp_path: Path,
                                                               name: str) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
           "REDIS_URL": settings.redis_url or "", "ROUTER_REDIS_KEY_PREFIX": f"{name}:", "ROUTER_ADMIN_TOKEN": ""}
    refused = subprocess.run([sys.executable, "-m", "router", "admin", "--port", "0"], cwd=ROOT, env=env, check=False,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and refused.stdout == ""
    assert "router: error [config.invalid]: ROUTER_ADMIN_TOKEN is not set" in refused.stderr
    assert "Traceback" not in refused.stderr
    # A token shorter than 32 characters is refused too, in one line, without printing it.
    short = subprocess.run([sys.executable, "-m", "router", "admin", "--port", "0"], cwd=ROOT, check=False,
                           env={**env, "ROUTER_ADMIN_TOKEN": "guessable-0123456789"}, capture_output=True, text=True,
                           timeout=60)
    assert short.returncode == 2 and short.stdout == ""
    assert short.stderr.splitlines() == ["router: error [config.invalid]: ROUTER_ADMIN_TOKEN is 20 characters long; "
                                         "it must be at least 32 characters (`python -c 'import secrets; "
                                         "print(secrets.token_hex(16))'`)"]

    out = tmp_path / "dev.out"
    with open(out, "wb") as stdout:
        proc = subprocess.Popen([sys.executable, "-m", "router", "admin", "--port", "0", "--dev-token"], cwd=ROOT,
                                env=env, stdout=stdout, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: out.read_text().strip() or proc.poll() is not None, deadline_s=60,
                 what="router admin --dev-token to print READY")
        [line] = out.read_text().splitlines()
        fields = dict(part.split("=", 1) for part in line.split()[1:])
        assert line.startswith("READY admin=http://127.0.0.1:") and set(fields) == {"admin", "admin_token"}
        token = fields["admin_token"]
        assert len(token) == 32 and int(token, 16) >= 0
        req = urllib.request.Request(f"{fields['admin']}/api/health", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            rows = orjson.loads(resp.read())["rows"]
        assert {r["integration"] for r in rows} >= {"zendesk-escalations-to-pagerduty"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

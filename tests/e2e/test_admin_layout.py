"""The health page fits a 1,280-pixel screen whatever a partner put in a reason (issue 22).

A `needs_reconnect` reason holding a partner's JSON body (no spaces) widened the table to 1,856 px
and pushed success rate, DLQ depth, lag and the Resume button off-screen.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import redis
from playwright.sync_api import expect, sync_playwright

from router.controls import set_state
from router.health import HealthBatch, HealthWriter, Tally
from router.settings import Settings
from support.delivering import http_spec
from support.routing import make_topology
from tests.e2e.test_admin_page import CHROMIUM, CHROMIUM_ARGS, EXPECT_S, TOKEN, admin_process

WIDTH = 1280


def test_a_long_reason_folds_and_the_row_fits_the_screen(settings: Settings, tmp_path: Path, name: str) -> None:
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: apt-get install -y chromium (Debian package)"
    prefix = f"{name}:"
    integration = f"{name}-crm"
    topo = make_topology(tmp_path, name, {"crm": http_spec(integration, name, f"{name}-d", "http://127.0.0.1:9/x")})
    partner_body = orjson.dumps({"error": {"code": "invalid_token", "details": ["x" * 60] * 30,
                                           "trace": "abcdef0123456789" * 40}}).decode()
    client = redis.Redis.from_url(settings.redis_url or "")
    try:
        set_state(client, prefix, integration, "needs_reconnect",
                  f"the partner refused the credentials: HTTP 401 {partner_body}")
        batch = HealthBatch()
        batch.rows[(integration, "acme")] = Tally(ok=3, fail=1, last_error=(
            "deliver.http_4xx", f"HTTP 401: {partner_body}", partner_body.encode()))
        HealthWriter(prefix).write(client, batch)
        env = {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "", "REDIS_URL": settings.redis_url or "",
               "ROUTER_REDIS_KEY_PREFIX": prefix, "ROUTER_ADMIN_TOKEN": TOKEN}
        with admin_process(tmp_path, env, "--integrations", str(topo.integrations), "--schemas",
                           str(topo.schemas)) as url, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": WIDTH, "height": 800})
                page.goto(f"{url}/login?token={TOKEN}")
                row = page.get_by_test_id(f"row-{integration}-acme")
                expect(row.get_by_test_id("state")).to_have_text("needs reconnect", timeout=EXPECT_S)
                page.screenshot(path=str(tmp_path / "admin-1280.png"), full_page=True)
                scroll_width = page.evaluate("document.documentElement.scrollWidth")
                assert scroll_width <= WIDTH, f"the page is {scroll_width}px wide at {WIDTH}px"
                for test_id in ("success-rate", "dlq-depth", f"resume-{integration}"):
                    box = row.get_by_test_id(test_id).bounding_box()
                    assert box is not None and box["x"] + box["width"] <= WIDTH, f"{test_id} is off-screen: {box}"
                reason = row.get_by_test_id("state-reason")
                expect(reason).to_contain_text("HTTP 401")
                reason.locator("summary").click()  # the whole reason is one click away
                expect(reason).to_contain_text("abcdef0123456789" * 3)
                assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH, "unfolded, it still fits"
            finally:
                browser.close()
    finally:
        client.close()

"""The admin app in-process against the session's Redis and broker: auth, rows, actions, metrics."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from router import headers as h
from router import redisconn, telemetry
from router.controls import read_states, set_state
from router.errors import ConfigError
from router.health import WORKER_STALE_S, HealthBatch, HealthWriter, worker_entry, worker_field, workers_key
from router.kafka import admin_client, ensure_topics
from router.progress import BROKER, ProgressStatus
from router.settings import Secret, Settings
from services.admin.app import AdminOptions, create_app
from services.admin.rows import NO_TENANT
from support.routing import Topology, make_topology, produce, read_all, zendesk_spec

TOKEN = "test-admin-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
Scenario = Callable[[TestClient], Awaitable[None]]


@pytest.fixture
def admin_settings(settings: Settings, name: str) -> Settings:
    return settings.replace(redis_key_prefix=f"{name}:", admin_token=Secret(TOKEN), route_group=f"{name}-route")


@pytest.fixture
def admin_settings_each_redis(settings_each_redis: Settings, name: str) -> Settings:
    """:func:`admin_settings` on a standalone Redis, then on a Redis Cluster (docs/redis.md)."""
    return settings_each_redis.replace(redis_key_prefix=f"{name}:", admin_token=Secret(TOKEN),
                                       route_group=f"{name}-route")


@pytest.fixture
def topo(tmp_path: Path, name: str) -> Topology:
    return make_topology(tmp_path, name, {
        "a": zendesk_spec(f"{name}-a", source=name, destination=f"{name}-d"),
        "b": zendesk_spec(f"{name}-b", source=f"{name}-s2", destination=f"{name}-d2"),
    })


def run_app(settings: Settings, topo: Topology, scenario: Scenario, deliver_group: str = "router.deliver") -> None:
    """Serve the app on a real socket for the scenario, then stop it (cleanup_ctx included)."""
    async def main() -> None:
        app = create_app(settings, catalog=topo.catalog,
                         options=AdminOptions(deliver_group=deliver_group, cache_ttl_s=0.2))
        async with TestClient(TestServer(app)) as client:
            await asyncio.wait_for(scenario(client), 120)

    asyncio.run(main())


async def login(client: TestClient) -> str:
    """Log in through /login?token= and return the page's CSRF token."""
    resp = await client.get(f"/login?token={TOKEN}", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/"
    cookie = resp.cookies["router_admin_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert TOKEN not in cookie.value
    page = await client.get("/")
    assert page.status == 200
    match = re.search(r'name="csrf" value="([0-9a-f]{32})"', await page.text())
    assert match
    return match.group(1)


def test_everything_but_health_and_metrics_needs_the_token(admin_settings_each_redis: Settings, topo: Topology
                                                           ) -> None:
    async def scenario(client: TestClient) -> None:
        resp = await client.get("/", allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/login"
        resp = await client.get("/login")
        assert resp.status == 200 and 'type="password"' in await resp.text()
        resp = await client.get("/api/health")
        assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Bearer" in (await resp.json())["message"]
        resp = await client.get("/api/health", headers={"Authorization": "Bearer wrong"})
        assert resp.status == 401
        resp = await client.post(f"/integrations/{topo.catalog.integrations[0].name}/pause",
                                 headers={"Authorization": "Bearer wrong"})
        assert resp.status == 401
        resp = await client.get("/login?token=wrong", allow_redirects=False)
        assert resp.status == 401 and "not the admin token" in await resp.text()
        assert "router_admin_session" not in resp.cookies
        assert (await client.get("/healthz")).status == 200
        resp = await client.get("/api/health", headers=BEARER)
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store" and "default-src 'none'" in resp.headers[
            "Content-Security-Policy"]
        # The login form posts the token; the cookie then opens the page.
        resp = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
        assert resp.status == 303
        resp = await client.get("/")
        assert resp.status == 200 and "Integration health" in await resp.text()

    run_app(admin_settings_each_redis, topo, scenario)


def test_a_missing_token_is_a_clear_config_error(settings: Settings, topo: Topology) -> None:
    with pytest.raises(ConfigError, match="ROUTER_ADMIN_TOKEN is not set"):
        create_app(settings.replace(admin_token=None), catalog=topo.catalog)


def test_rows_reflect_the_health_written_by_the_workers(admin_settings_each_redis: Settings, topo: Topology,
                                                       name: str) -> None:
    admin_settings = admin_settings_each_redis
    a, b = f"{name}-a", f"{name}-b"
    client = redisconn.connect(admin_settings.redis_url or "")
    batch = HealthBatch()
    batch.ok(a, "acme", 3)
    batch.fail(a, "acme", "map.required_missing", "title is required",
               orjson.dumps({"ticket": {"id": 7}, "requester_email": "ana@example.com"}))
    batch.ok(a, "globex")
    batch.fail(a, '<b id="x">evil</b>', "decode.invalid_json", "<script>alert(1)</script>", b"<img src=x>")
    HealthWriter(admin_settings.redis_key_prefix).write(client, batch)
    HealthWriter(admin_settings.redis_key_prefix, success_field="last_routed_ms").write(client, _ok(a, "acme"))
    set_state(client, admin_settings.redis_key_prefix, b, "needs_reconnect", "401 from the partner")
    client.close()

    async def scenario(http: TestClient) -> None:
        body = await (await http.get("/api/health", headers=BEARER)).json()
        rows = {(r["integration"], r["tenant"]): r for r in body["rows"]}
        assert sorted(rows) == [(a, '<b id="x">evil</b>'), (a, "acme"), (a, "globex"), (b, NO_TENANT)]
        acme = rows[(a, "acme")]
        assert acme["state"] == "active"
        assert acme["ok_1h"] == 4 and acme["fail_1h"] == 1 and acme["success_rate_1h"] == 0.8
        assert acme["last_success"] and acme["last_routed"]
        error = acme["last_error"]
        assert error["code"] == "map.required_missing" and error["message"] == "title is required"
        assert "ana@example.com" not in error["sample"] and '"id":7' in error["sample"].replace(" ", "")
        assert rows[(a, "globex")]["last_error"] is None and rows[(a, "globex")]["success_rate_1h"] == 1.0
        assert rows[(b, NO_TENANT)]["state"] == "needs_reconnect"
        assert rows[(b, NO_TENANT)]["success_rate_1h"] is None
        # The page shows the same, escaped, with stable test ids.
        await login(http)
        page = await (await http.get("/")).text()
        assert f'data-testid="row-{a}-acme"' in page
        assert '<code data-testid="error-code">map.required_missing</code>' in page
        assert "ana@example.com" not in page and "80.0%" in page
        assert "<script>" not in page and "<img" not in page and '<b id="x">' not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert 'data-testid="row-' + a + '-&lt;b id=&quot;x&quot;&gt;evil&lt;/b&gt;"' in page

    run_app(admin_settings, topo, scenario)


def test_workers_failing_or_silent_are_shown(admin_settings: Settings, topo: Topology, name: str) -> None:
    """A worker failing on the broker wrote so in its row; one whose Redis failed could not, so its
    row is old: the page shows the first failing (with an alert) and the second not reporting."""
    prefix = admin_settings.redis_key_prefix
    now_ms = int(time.time() * 1000)
    client = redisconn.connect(admin_settings.redis_url or "")
    client.hset(workers_key(prefix), mapping={
        worker_field("route", "host-a:1"): worker_entry("route", f"{name}-route", "host-a:1",
                                                        ProgressStatus(True, 75.0, BROKER, "batch", 80.0), now_ms),
        worker_field("deliver", "host-b:2"): worker_entry(
            "deliver", "router.deliver", "host-b:2", ProgressStatus(False, None, None, None, 1.0),
            now_ms - int(WORKER_STALE_S * 1000) - 5_000)})
    client.close()

    async def scenario(http: TestClient) -> None:
        body = await (await http.get("/api/health", headers=BEARER)).json()
        workers = {w["member"]: w for w in body["workers"]}
        assert workers["host-a:1"]["state"] == "failing" and workers["host-a:1"]["reason"] == "broker"
        assert workers["host-a:1"]["failing_since"] and workers["host-a:1"]["last_success"]
        assert workers["host-b:2"]["state"] == "stale"
        await login(http)
        page = await (await http.get("/")).text()
        assert 'data-testid="worker-failing"' in page and "host-a:1" in page
        assert 'data-testid="worker-deliver-host-b:2"' in page and "not reporting" in page

    run_app(admin_settings, topo, scenario)


def _ok(integration: str, tenant: str) -> HealthBatch:
    batch = HealthBatch()
    batch.ok(integration, tenant)
    return batch


def test_pause_and_resume_change_the_shared_state(admin_settings_each_redis: Settings, topo: Topology,
                                                  name: str) -> None:
    admin_settings = admin_settings_each_redis
    a = f"{name}-a"
    prefix = admin_settings.redis_key_prefix
    client = redisconn.connect(admin_settings.redis_url or "")

    def state() -> str:
        return read_states(client, prefix, [a])[a].state

    async def scenario(http: TestClient) -> None:
        resp = await http.post(f"/integrations/{a}/pause", headers=BEARER)
        assert resp.status == 200 and await resp.json() == {"integration": a, "state": "paused"}
        assert state() == "paused"
        resp = await http.post(f"/integrations/{a}/resume", headers=BEARER)
        assert resp.status == 200 and state() == "active"
        # Resume also clears needs_reconnect.
        set_state(client, prefix, a, "needs_reconnect", "token refused")
        await http.post(f"/integrations/{a}/resume", headers=BEARER)
        assert state() == "active"
        # A browser form needs the CSRF token of its cookie.
        csrf = await login(http)
        resp = await http.post(f"/integrations/{a}/pause", data={}, allow_redirects=False)
        assert resp.status == 403 and state() == "active"
        resp = await http.post(f"/integrations/{a}/pause", data={"csrf": "0" * 32}, allow_redirects=False)
        assert resp.status == 403 and state() == "active"
        resp = await http.post(f"/integrations/{a}/pause", data={"csrf": csrf}, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/" and state() == "paused"
        page = await (await http.get("/")).text()
        assert f"Paused {a}." in page and f'data-testid="resume-{a}"' in page
        assert f"Paused {a}." not in await (await http.get("/")).text()  # the flash shows once

    try:
        run_app(admin_settings, topo, scenario)
    finally:
        client.close()


def test_an_unknown_integration_is_a_clear_404(admin_settings: Settings, topo: Topology, name: str) -> None:
    async def scenario(http: TestClient) -> None:
        resp = await http.post("/integrations/nope/pause", headers=BEARER)
        assert resp.status == 404
        body = await resp.json()
        assert "no integration named 'nope'" in body["message"] and f"{name}-a" in body["message"]
        csrf = await login(http)
        resp = await http.post("/integrations/nope/resume", data={"csrf": csrf})
        text = await resp.text()
        assert resp.status == 404 and "no integration named &#x27;nope&#x27;" in text and "Traceback" not in text
        resp = await http.get("/no/such/page")
        assert resp.status == 404 and "Traceback" not in await resp.text()

    run_app(admin_settings, topo, scenario)


def _dlq_record(integration: str, code: str, original: str, event: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    headers = [(h.TENANT, b"acme"), (h.INTEGRATION, integration.encode()), (h.ERROR_CODE, code.encode()),
               (h.ERROR_MESSAGE, b"title is required"), (h.ORIGINAL_TOPIC, original.encode()),
               (h.EVENT_ID, event.encode())]
    return b"k", orjson.dumps({"event_id": event}), headers


def _gauge(text: str, metric: str, **labels: str) -> list[float]:
    return [s.value for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items())]


def test_dlq_depth_lag_metrics_and_replay_by_code(admin_settings: Settings, topo: Topology, name: str) -> None:
    telemetry.setup("test")
    bootstrap = admin_settings.kafka_bootstrap_servers or ""
    a, b = f"{name}-a", f"{name}-b"
    source, source_dlq = topo.source_topic, f"{topo.source_topic}.dlq"
    ensure_topics(admin_client(admin_settings), topo.catalog.all_topics(), partitions=1)
    produce(bootstrap, source_dlq, [_dlq_record(a, "map.required_missing", source, "e1")])
    produce(bootstrap, source_dlq, [_dlq_record(a, "map.type_error", source, "e2"),
                                    _dlq_record(b, "map.required_missing", f"ingest.{name}-s2", "e3")])
    produce(bootstrap, f"delivery.{name}-d.dlq", [_dlq_record(a, "deliver.http_4xx", f"delivery.{name}-d", "e4")])
    for i in range(3):  # separate batches: Tansu's high watermark is the base offset of the last batch
        produce(bootstrap, source, [(b"k", orjson.dumps({"n": i}), [])])

    async def scenario(http: TestClient) -> None:
        body = await (await http.get("/api/health", headers=BEARER)).json()
        rows = {r["integration"]: r for r in body["rows"]}
        assert body["kafka"]["error"] is None
        assert rows[a]["dlq"] == {"depth": 3, "by_code": {"map.required_missing": 1, "map.type_error": 1,
                                                          "deliver.http_4xx": 1},
                                  "by_topic": {f"delivery.{name}-d.dlq": 1, source_dlq: 1 + 1}}
        assert rows[b]["dlq"]["depth"] == 1
        route = rows[a]["consumer_lag"]["route"]
        assert route["topic"] == source and route["total"] >= 2  # nothing committed by the route group

        metrics = await (await http.get("/metrics")).text()
        assert _gauge(metrics, "router_dlq_depth", topic=source_dlq, integration=a) == [2.0]
        assert _gauge(metrics, "router_dlq_depth", topic=f"delivery.{name}-d.dlq", integration=a) == [1.0]
        lag = _gauge(metrics, "router_consumer_lag", group=admin_settings.route_group, topic=source, partition="0")
        assert lag and lag[0] >= 2

        resp = await http.post(f"/integrations/{a}/replay?code=map.required_missing", headers=BEARER)
        assert resp.status == 200, await resp.text()
        summary = await resp.json()
        assert summary["replayed"] == 1 and summary["failed"] == 0
        again = await (await http.post(f"/integrations/{a}/replay?code=map.required_missing", headers=BEARER)).json()
        assert again["replayed"] == 0  # the cursor moved past it
        resp = await http.post(f"/integrations/{a}/replay?code=<script>", headers=BEARER)
        assert resp.status == 400

    run_app(admin_settings, topo, scenario)
    replayed = [m for m in read_all(bootstrap, source, expect=4, deadline_s=30)
                if dict(m.headers() or []).get(h.REPLAY_COUNT)]
    assert [orjson.loads(m.value())["event_id"] for m in replayed] == ["e1"]

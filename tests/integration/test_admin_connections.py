"""The admin page's Connections section in-process against the session's Redis and broker:
the rows, CSRF, Resume and Disconnect, and hostile input to the connect form and the callback."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
from aiohttp.test_utils import TestClient

from router.connections.keyring import KEY_ENV, KeyRing, generate_key
from router.connections.model import ApiKey, Connection, OAuth2AuthorizationCode
from router.connections.store import TOPIC_ENV, ConnectionStore, ConnectionWriter
from router.health import row_key
from router.settings import Secret, Settings
from support.delivering import http_spec
from support.routing import Topology, make_topology
from tests.integration.test_admin import TOKEN, login, run_app

SECRET = "admin-conn-SECRET-never-shown"
CLIENT_SECRET = "admin-conn-client-secret"
DEAD = "http://127.0.0.1:9"  # nothing listens: revocation fails, and says so


@pytest.fixture
def conn_settings(settings: Settings, name: str) -> Settings:
    return settings.replace(redis_key_prefix=f"{name}:", admin_token=Secret(TOKEN), route_group=f"{name}-route")


@pytest.fixture
def conn_topo(tmp_path: Path, name: str) -> Topology:
    oauth = (f"{{credentials: [oauth2_authorization_code], authorize_url: '{DEAD}/oauth/authorize', "
             f"token_url: '{DEAD}/oauth/token', revoke_url: '{DEAD}/oauth/revoke', client_id: admin-test, "
             "client_secret: 'env:ADMIN_CONN_SECRET'}")
    return make_topology(tmp_path, name, {
        "o": http_spec(f"{name}-o", name, f"{name}-d", f"{DEAD}/v1/d", connection=oauth),
        "k": http_spec(f"{name}-k", f"{name}-s2", f"{name}-d2", f"{DEAD}/v1/d2",
                       connection="{credentials: [api_key]}"),
    })


@pytest.fixture
def ring(monkeypatch: pytest.MonkeyPatch, name: str) -> KeyRing:
    key = generate_key()
    monkeypatch.setenv(KEY_ENV, key)
    monkeypatch.setenv(TOPIC_ENV, f"_connections.{name}")
    monkeypatch.setenv("ADMIN_CONN_SECRET", CLIENT_SECRET)
    return KeyRing.parse(key, KEY_ENV)


def _seed(settings: Settings, ring: KeyRing, topic: str, *connections: Connection) -> None:
    writer = ConnectionWriter(settings, ring, topic)
    try:
        for c in connections:
            writer.put(c)
    finally:
        writer.close()


def _held(settings: Settings, ring: KeyRing, topic: str) -> dict[str, Connection]:
    with ConnectionStore(settings, ring, topic) as store:
        assert store.wait_caught_up(30)
        return {c.key: c for c in store.all()}


def _oauth_creds() -> OAuth2AuthorizationCode:
    return OAuth2AuthorizationCode(Secret(SECRET), Secret(SECRET + "-refresh"), int(time.time() * 1000) + 3_600_000)


async def _text(resp) -> str:  # type: ignore[no-untyped-def]
    return str(await resp.text())


def test_without_a_key_the_page_says_connections_need_one(conn_settings: Settings, conn_topo: Topology,
                                                          monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv("ROUTER_ENCRYPTION_KEY_FILE", raising=False)

    async def scenario(http: TestClient) -> None:
        csrf = await login(http)
        page = await _text(await http.get("/"))
        assert 'data-testid="connections-note"' in page and "ROUTER_ENCRYPTION_KEY" in page
        api = await (await http.get("/api/connections")).json()
        assert api["configured"] is False and api["connections"] == []
        resp = await http.post(f"/connections/acme/{name}-o/disconnect", data={"csrf": csrf}, allow_redirects=False)
        assert resp.status == 409 and "ROUTER_ENCRYPTION_KEY" in await _text(resp)

    run_app(conn_settings, conn_topo, scenario)


def test_rows_csrf_resume_and_disconnect(conn_settings: Settings, conn_topo: Topology, ring: KeyRing,
                                         name: str) -> None:
    topic, o, k = f"_connections.{name}", f"{name}-o", f"{name}-k"
    _seed(conn_settings, ring, topic,
          Connection("acme", o, credentials=_oauth_creds(), created_at_ms=1, updated_at_ms=1),
          Connection("globex", k, state="needs_reconnect", state_reason="401 from the partner",
                     credentials=ApiKey(Secret(SECRET)), created_at_ms=1, updated_at_ms=1))
    client = redis.Redis.from_url(conn_settings.redis_url or "", decode_responses=True)
    health = row_key(conn_settings.redis_key_prefix, o, "acme")
    client.hset(health, "ok", "1")

    async def scenario(http: TestClient) -> None:
        csrf = await login(http)
        page = await _text(await http.get("/"))
        assert f'data-testid="conn-acme-{o}"' in page and f'data-testid="conn-globex-{k}"' in page
        assert f'data-testid="reconnect-acme-{o}"' in page and f'data-testid="resume-globex-{k}"' in page
        assert "oauth2_authorization_code" in page and SECRET not in page
        api = await (await http.get("/api/connections")).json()
        assert {(c["tenant"], c["state"]) for c in api["connections"]} == {("acme", "active"),
                                                                           ("globex", "needs_reconnect")}
        assert SECRET not in str(api)

        # No CSRF field, or a wrong one: refused, nothing written.
        for data in ({}, {"csrf": "0" * 32}):
            resp = await http.post(f"/connections/acme/{o}/disconnect", data=data, allow_redirects=False)
            assert resp.status == 403 and "admin.csrf_invalid" in await _text(resp)
        assert _state(f"acme/{o}") == "active"

        resp = await http.post(f"/connections/globex/{k}/resume", data={"csrf": csrf}, allow_redirects=False)
        assert resp.status == 303
        assert 'data-testid="flash"' in (page := await _text(await http.get("/")))
        assert f"resumed globex/{k}" in page
        resp = await http.post(f"/connections/globex/{k}/resume", data={"csrf": csrf}, allow_redirects=False)
        assert resp.status == 409, "an active connection is not resumed"

        resp = await http.post(f"/connections/acme/{o}/disconnect", data={"csrf": csrf}, allow_redirects=False)
        assert resp.status == 303
        page = await _text(await http.get("/"))
        assert f"disconnected acme/{o}" in page and "tokens not revoked" in page and "purged 1 Redis key" in page
        assert f'data-testid="connect-acme-{o}"' in page and f'data-testid="disconnect-acme-{o}"' not in page
        resp = await http.post(f"/connections/nobody/{o}/disconnect", data={"csrf": csrf}, allow_redirects=False)
        assert resp.status == 404 and "connections.not_found" in await _text(resp)

    def _state(key: str) -> str:
        return _held(conn_settings, ring, topic)[key].state

    run_app(conn_settings, conn_topo, scenario)
    held = _held(conn_settings, ring, topic)
    assert held[f"acme/{o}"].state == "disconnected" and held[f"acme/{o}"].credentials is None
    assert held[f"globex/{k}"].state == "active"
    assert not client.exists(health)


def test_hostile_connect_form_and_callback(conn_settings: Settings, conn_topo: Topology, ring: KeyRing,
                                          name: str) -> None:
    topic, o, k = f"_connections.{name}", f"{name}-o", f"{name}-k"

    async def scenario(http: TestClient) -> None:
        csrf = await login(http)

        async def refused(resp, status: int, words: str) -> None:  # type: ignore[no-untyped-def]
            text = await _text(resp)
            assert resp.status == status, text
            assert words in text and "Traceback" not in text

        for tenant in ("Acme!", "", "a" * 64, "../x"):
            await refused(await http.post("/connections/connect", data={"csrf": csrf, "tenant": tenant,
                                                                         "integration": o}, allow_redirects=False),
                          400, "is not a tenant name")
        await refused(await http.post("/connections/connect", data={"csrf": csrf, "tenant": "acme",
                                                                     "integration": "nope"}), 404, "known:")
        await refused(await http.post("/connections/connect", data={"csrf": csrf, "tenant": "acme",
                                                                     "integration": k}),
                      400, "oauth2_authorization_code")
        await refused(await http.post("/connections/connect", data={"tenant": "acme", "integration": o}),
                      403, "admin.csrf_invalid")

        for query in ("", "code=x", "state=a&state=b&code=x", "state=unknown&code=x",
                      "state=" + "s" * 5000, "&".join(f"f{i}=1" for i in range(30)), "state=%ff%fe&code=%00"):
            await refused(await http.get(f"/connections/callback?{query}"), 400, "Not connected")

        # A real attempt: the partner's error, then the same state again (used once).
        resp = await http.post("/connections/connect", data={"csrf": csrf, "tenant": "acme", "integration": o},
                               allow_redirects=False)
        assert resp.status == 303
        location = resp.headers["Location"]
        assert location.startswith(f"{DEAD}/oauth/authorize?") and CLIENT_SECRET not in location
        asked = parse_qs(urlsplit(location).query)
        assert asked["login_hint"] == ["acme"] and asked["code_challenge_method"] == ["S256"]
        assert asked["redirect_uri"][0].endswith("/connections/callback")
        state = asked["state"][0]
        await refused(await http.get(f"/connections/callback?state={state}&error=access_denied"), 400,
                      "the partner answered access_denied")
        await refused(await http.get(f"/connections/callback?state={state}&code=abc"), 400, "unknown or expired")

        # Another browser (no binding cookie) cannot finish this browser's attempt.
        resp = await http.post(f"/connections/acme/{o}/connect", data={"csrf": csrf}, allow_redirects=False)
        state = parse_qs(urlsplit(resp.headers["Location"]).query)["state"][0]
        http.session.cookie_jar.clear(lambda c: c.key == "router_admin_connect")
        await refused(await http.get(f"/connections/callback?state={state}&code=abc"), 400,
                      "this browser did not start")

    run_app(conn_settings, conn_topo, scenario)
    assert _held(conn_settings, ring, topic) == {}, "nothing written"

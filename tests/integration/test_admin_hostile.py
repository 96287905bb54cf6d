"""The admin app against a hostile browser and a token guesser (issue 15, findings 8 and 10).

Run in-process on a real socket against the session's Redis and broker, like test_admin.py.
Time is a fake clock handed to the app, so the throttle's delays are checked without sleeping.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from router.controls import read_states
from router.errors import ConfigError
from router.settings import Secret, Settings
from services.admin import auth
from services.admin.app import AdminOptions, create_app
from services.admin.cli import admin_settings as cli_settings
from support.routing import Topology, make_topology, zendesk_spec

TOKEN = "hostile-admin-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Accept": "application/json"}
Scenario = Callable[[TestClient], Awaitable[None]]


class FakeClock:
    """Seconds since the epoch, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def admin_settings(settings: Settings, name: str) -> Settings:
    return settings.replace(redis_key_prefix=f"{name}:", admin_token=Secret(TOKEN), route_group=f"{name}-route")


@pytest.fixture
def topo(tmp_path: Path, name: str) -> Topology:
    return make_topology(tmp_path, name, {"a": zendesk_spec(f"{name}-a", source=name, destination=f"{name}-d")})


def run_app(settings: Settings, topo: Topology, scenario: Scenario, options: AdminOptions | None = None) -> None:
    async def main() -> None:
        app = create_app(settings, catalog=topo.catalog, options=options or AdminOptions(cache_ttl_s=0.2))
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await asyncio.wait_for(scenario(client), 60)

    asyncio.run(main())


async def browser_login(client: TestClient) -> str:
    """Log in as a browser does; the page's CSRF token."""
    resp = await client.get(f"/login?token={TOKEN}", allow_redirects=False)
    assert resp.status == 303, await resp.text()
    match = re.search(r'name="csrf" value="([0-9a-f]{32})"', await (await client.get("/")).text())
    assert match
    return match.group(1)


# ---- finding 8: CSRF by cookie tossing -----------------------------------------------------------


def test_a_tossed_csrf_cookie_and_cross_origin_posts_are_refused(admin_settings: Settings, topo: Topology,
                                                                 name: str) -> None:
    a = f"{name}-a"
    client = redis.Redis.from_url(admin_settings.redis_url or "")

    def state() -> str:
        return read_states(client, admin_settings.redis_key_prefix, [a])[a].state

    async def scenario(http: TestClient) -> None:
        csrf = await browser_login(http)
        port = http.port or 0
        own = f"http://{http.host}:{port}"
        evil = f"http://{http.host}:{port + 1}"  # another port of the same host: same site
        pause = f"/integrations/{a}/pause"

        # The attack as a browser runs it: the page on the other port sets the CSRF cookie (cookies
        # ignore ports) and auto-posts the same value; SameSite=Strict still sends the session.
        tossed = "a" * 32
        http.session.cookie_jar.update_cookies({"router_admin_csrf": tossed}, response_url=URL(own))
        resp = await http.post(pause, data={"csrf": tossed}, allow_redirects=False,
                               headers={"Origin": evil, "Sec-Fetch-Site": "same-site", **JSON})
        assert resp.status == 403, await resp.text()
        assert (await resp.json())["code"] == "admin.cross_origin"
        assert state() == "active"
        # Without the headers (an old browser), the tossed pair is still refused: the token is bound
        # to the session, not to a cookie another origin can write.
        resp = await http.post(pause, data={"csrf": tossed}, allow_redirects=False, headers=JSON)
        assert resp.status == 403 and (await resp.json())["code"] == "admin.csrf_invalid"
        # The page's own token from a foreign origin, or flagged cross-site, is refused too.
        for headers in ({"Origin": evil}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"},
                        {"Sec-Fetch-Site": "same-site", "Origin": own}):
            resp = await http.post(pause, data={"csrf": csrf}, allow_redirects=False, headers={**headers, **JSON})
            assert resp.status == 403, headers
            assert (await resp.json())["code"] == "admin.cross_origin"
        # Every state-changing request: Bearer and the login form as well.
        resp = await http.post(pause, headers={**BEARER, "Origin": evil})
        assert resp.status == 403 and (await resp.json())["code"] == "admin.cross_origin"
        resp = await http.post("/login", data={"token": TOKEN}, allow_redirects=False, headers={"Origin": evil})
        assert resp.status == 403 and "admin.cross_origin" in await resp.text()
        assert state() == "active"

        # Another session's token does not fit this session.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
            resp = await other.get(http.make_url(f"/login?token={TOKEN}"))
            match = re.search(r'name="csrf" value="([0-9a-f]{32})"', await resp.text())
            assert match and match.group(1) != csrf
            resp = await http.post(pause, data={"csrf": match.group(1)}, allow_redirects=False, headers=JSON)
            assert resp.status == 403 and state() == "active"

        # A same-origin form still works: Chromium sends Sec-Fetch-Site and, under the page's
        # no-referrer policy, `Origin: null`.
        resp = await http.post(pause, data={"csrf": csrf}, allow_redirects=False,
                               headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"})
        assert resp.status == 303 and state() == "paused"
        resp = await http.post(f"/integrations/{a}/resume", data={"csrf": csrf}, allow_redirects=False,
                               headers={"Origin": own})
        assert resp.status == 303 and state() == "active"

    try:
        run_app(admin_settings, topo, scenario)
    finally:
        client.close()


# ---- finding 10: token guessing ----------------------------------------------------------------


def test_wrong_token_guesses_are_throttled_per_address(admin_settings: Settings, topo: Topology) -> None:
    async def scenario(http: TestClient) -> None:
        for i in range(5):
            resp = await http.get(f"/login?token=wrong-{i}", allow_redirects=False)
            assert resp.status == 401
        resp = await http.get("/login?token=wrong-5", allow_redirects=False)
        assert resp.status == 429, await resp.text()
        assert resp.headers["Retry-After"] == "1" and "admin.login_throttled" in await resp.text()
        # While throttled even the right token is refused, unchecked: a guess cannot learn anything.
        resp = await http.get(f"/login?token={TOKEN}", allow_redirects=False)
        assert resp.status == 429 and "router_admin_session" not in resp.cookies
        resp = await http.post("/login", data={"token": TOKEN}, allow_redirects=False)
        assert resp.status == 429
        resp = await http.get("/api/health", headers=BEARER)
        assert resp.status == 429 and (await resp.json())["code"] == "admin.login_throttled"

    run_app(admin_settings, topo, scenario)


def test_the_delay_doubles_a_success_resets_it_and_bearer_guesses_count(admin_settings: Settings,
                                                                         topo: Topology) -> None:
    clock = FakeClock()

    async def scenario(http: TestClient) -> None:
        async def guess(token: str) -> aiohttp.ClientResponse:
            return await http.get("/api/health", headers={"Authorization": f"Bearer {token}"})

        for _ in range(5):
            assert (await guess("wrong")).status == 401
        delays = []
        for _ in range(6):
            resp = await guess("wrong")
            assert resp.status == 429
            delays.append(int(resp.headers["Retry-After"]))
            clock.now += delays[-1]
            assert (await guess("wrong")).status == 401
        assert delays == [1, 2, 4, 8, 16, 32]
        clock.now += 64
        assert (await guess(TOKEN)).status == 200  # the right token, once allowed, resets the count
        for _ in range(5):
            assert (await guess("wrong")).status == 401
        assert (await guess(TOKEN)).status == 429
        # A browser session is not a guess: it is not throttled.
        clock.now += 1
        await browser_login(http)
        for _ in range(5):
            assert (await guess("wrong")).status == 401
        resp = await http.get("/api/health", headers=JSON)
        assert resp.status == 200

    run_app(admin_settings, topo, scenario, AdminOptions(cache_ttl_s=0.2, clock=clock))


def test_failures_from_many_addresses_are_throttled_globally(admin_settings: Settings, topo: Topology) -> None:
    clock = FakeClock()
    limits = auth.LoginLimits(free_failures=5, max_delay_s=900, global_failures_per_minute=12)

    async def scenario(http: TestClient) -> None:
        async def from_address(address: str, token: str) -> aiohttp.ClientResponse:
            connector = aiohttp.TCPConnector(local_addr=(address, 0))
            async with aiohttp.ClientSession(connector=connector) as session:
                resp = await session.get(http.make_url(f"/login?token={token}"), allow_redirects=False)
                await resp.read()
                return resp

        for address in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            for _ in range(4):  # under each address's own limit
                assert (await from_address(address, "wrong")).status == 401
        resp = await from_address("127.0.0.5", TOKEN)  # a fresh address, the right token
        assert resp.status == 429 and 1 <= int(resp.headers["Retry-After"]) <= 60
        clock.now += int(resp.headers["Retry-After"])
        assert (await from_address("127.0.0.5", TOKEN)).status == 303  # the minute is over

    run_app(admin_settings, topo, scenario, AdminOptions(cache_ttl_s=0.2, clock=clock, login_limits=limits))


def test_a_short_admin_token_is_refused_outside_development(settings: Settings, topo: Topology) -> None:
    short = Secret("x" * 31)
    with pytest.raises(ConfigError, match="at least 32 characters"):
        create_app(settings.replace(admin_token=short), catalog=topo.catalog)
    args = argparse.Namespace(dev_token=False, integrations=None, schemas=None, route_group=None)
    with pytest.raises(ConfigError, match="at least 32 characters") as refused:
        cli_settings(args, settings.replace(admin_token=short))
    assert "x" * 31 not in str(refused.value) and "\n" not in str(refused.value)
    create_app(settings.replace(admin_token=Secret("x" * 32)), catalog=topo.catalog)
    # `router dev` runs `router admin --dev-token`: its made-up token is long enough, and a short
    # token of the developer's own is accepted there.
    dev = argparse.Namespace(dev_token=True, integrations=None, schemas=None, route_group=None)
    _, token = cli_settings(dev, settings.replace(admin_token=None))
    assert token is not None and len(token) >= 32
    dev_settings, _ = cli_settings(dev, settings.replace(admin_token=short))
    create_app(dev_settings, catalog=topo.catalog, options=AdminOptions(development=True))

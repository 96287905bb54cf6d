"""The partner simulator over real HTTP: deliveries, idempotency, rate limit, faults, auth, CLI.

Each test runs its own simulator in-process (aiohttp's TestServer on a free port) under
``asyncio.run``; the CLI test starts ``python -m router sim partner`` as a user would. No
broker or Redis is needed.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import selectors
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from router.errors import ConfigError
from services.partner_sim.partner import SimConfig, create_app
from support.delivering import partner_sim

Client = TestClient[web.Request, web.Application]
Scenario = Callable[[Client], Awaitable[None]]


def run(scenario: Scenario, config: SimConfig | None = None) -> None:
    """Run ``scenario`` against a fresh simulator."""

    async def main() -> None:
        async with TestClient(TestServer(create_app(config or SimConfig()))) as client:
            await scenario(client)

    asyncio.run(main())


async def post(
    client: Client, path: str, body: object, headers: Mapping[str, str] | None = None
) -> tuple[int, Any, Mapping[str, str]]:
    """POST JSON: (status, decoded body, response headers)."""
    async with client.post(path, data=json.dumps(body), headers=headers) as response:
        return response.status, await response.json(), response.headers


async def deliver(client: Client, destination: str, record: object, key: str | None = None, **headers: str) -> Any:
    """One record with its Idempotency-Key header: (status, body, headers)."""
    if key is not None:
        headers["Idempotency-Key"] = key
    return await post(client, f"/v1/{destination}", record, {k.replace("_", "-"): v for k, v in headers.items()})


async def ledger(client: Client, destination: str | None = None) -> Any:
    params = {"destination": destination} if destination is not None else {}
    async with client.get("/_ledger", params=params) as response:
        assert response.status == 200
        return await response.json()


async def add_rules(client: Client, *rules: dict[str, Any]) -> None:
    status, body, _ = await post(client, "/_control/rules", {"rules": list(rules)})
    assert status == 200, body


async def token(client: Client, **form: str) -> tuple[int, Any]:
    fields = {"grant_type": "client_credentials", "client_id": "sim-client", "client_secret": "sim-secret", **form}
    async with client.post("/oauth/token", data=fields) as response:
        return response.status, await response.json()


async def eventually(attempt: Callable[[], Awaitable[bool]], *, deadline_s: float, what: str) -> float:
    """Call ``attempt`` until it is true; the seconds that took. Fails at the deadline."""
    started = time.monotonic()
    while not await attempt():
        if time.monotonic() - started > deadline_s:
            raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


# -- deliveries and the ledger -----------------------------------------------------------------


def test_single_record_is_accepted_and_in_the_ledger() -> None:
    async def scenario(client: Client) -> None:
        status, body, _ = await deliver(client, "crm", {"id": 1, "name": "Ada"}, key="evt-1")
        assert (status, body) == (200, {"status": "accepted", "idempotency_key": "evt-1"})
        status, body, _ = await deliver(client, "crm", {"id": 2})  # no key
        assert (status, body) == (200, {"status": "accepted", "idempotency_key": "<no-key>"})
        seen = await ledger(client)
        assert seen["accepted"] == {"evt-1": 1, "<no-key>": 1}
        assert seen["duplicates"] == {}
        assert seen["requests"] == 2 and seen["by_status"] == {"200": 2} and seen["tokens_issued"] == 0
        first = seen["records"][0]
        assert {k: first[k] for k in ("destination", "idempotency_key", "record")} == {
            "destination": "crm",
            "idempotency_key": "evt-1",
            "record": {"id": 1, "name": "Ada"},
        }
        assert abs(first["at"] - time.time() * 1000) < 60_000

    run(scenario)


def test_batch_is_accepted_record_by_record() -> None:
    async def scenario(client: Client) -> None:
        records = [{"idempotency_key": f"k{i}", "n": i} for i in range(3)]
        status, body, _ = await post(client, "/v1/crm", {"records": records}, {"Idempotency-Key": "batch-1"})
        assert status == 200
        assert body == {
            "status": "accepted",
            "results": [{"index": i, "status": 200, "idempotency_key": f"k{i}"} for i in range(3)],
        }
        seen = await ledger(client, "crm")
        assert seen["accepted"] == {"k0": 1, "k1": 1, "k2": 1}  # record keys; the batch key is not counted
        assert [r["record"] for r in seen["records"]] == records
        assert seen["requests"] == 1

    run(scenario)


def test_a_repeated_key_is_a_duplicate_answered_as_success() -> None:
    async def scenario(client: Client) -> None:
        for _ in range(2):
            assert (await deliver(client, "crm", {"v": 1}, key="k1"))[0] == 200
        status, body, _ = await deliver(client, "crm", {"v": 2}, key="k1")
        assert (status, body) == (200, {"status": "accepted", "idempotency_key": "k1", "duplicate": True})
        batch = {"records": [{"idempotency_key": "k1"}, {"idempotency_key": "k2"}, {"idempotency_key": "k2"}]}
        status, body, _ = await post(client, "/v1/crm", batch)
        assert status == 200
        assert body["results"] == [
            {"index": 0, "status": 200, "idempotency_key": "k1", "duplicate": True},
            {"index": 1, "status": 200, "idempotency_key": "k2"},
            {"index": 2, "status": 200, "idempotency_key": "k2", "duplicate": True},
        ]
        assert (await deliver(client, "billing", {"v": 1}, key="k1"))[1].get("duplicate") is None
        crm = await ledger(client, "crm")
        assert crm["accepted"] == {"k1": 1, "k2": 1}
        assert crm["duplicates"] == {"k1": 3, "k2": 1}
        assert [r["record"] for r in crm["records"]] == [{"v": 1}, {"idempotency_key": "k2"}]
        assert (await ledger(client, "billing"))["accepted"] == {"k1": 1}
        assert (await ledger(client, "nowhere"))["requests"] == 0

    run(scenario)


def test_invalid_json_is_400() -> None:
    async def scenario(client: Client) -> None:
        async with client.post("/v1/crm", data=b"{not json", headers={"Idempotency-Key": "k"}) as response:
            assert (response.status, await response.json()) == (400, {"error": "invalid_json"})
        status, body, _ = await post(client, "/v1/crm", [1, 2])
        assert (status, body["error"]) == (400, "invalid_record")
        status, body, _ = await post(client, "/v1/crm", {"records": [{"idempotency_key": "a"}, 3]})
        assert (status, body["error"]) == (400, "invalid_record")
        seen = await ledger(client)
        assert seen["accepted"] == {} and seen["by_status"] == {"400": 3}

    run(scenario)


# -- rate limit --------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after_then_accepts_after_the_window() -> None:
    rate, per = 2, 1.0

    async def scenario(client: Client) -> None:
        started = time.monotonic()
        for i in range(rate):
            assert (await deliver(client, "crm", {}, key=f"k{i}"))[0] == 200
        status, body, headers = await deliver(client, "crm", {}, key="late")
        assert (status, body) == (429, {"error": "rate_limited"})
        assert int(headers["Retry-After"]) >= 1
        assert (await deliver(client, "billing", {}, key="other"))[0] == 200  # a bucket per destination
        seen = await ledger(client, "crm")
        assert seen["by_status"] == {"200": 2, "429": 1} and "late" not in seen["accepted"]

        # The bucket holds one request again per / rate seconds after the first one was taken.
        refill_s = per / rate

        async def accepted() -> bool:
            return (await deliver(client, "crm", {}, key="late"))[0] == 200

        await eventually(accepted, deadline_s=refill_s + 10, what="the bucket to refill")
        assert time.monotonic() - started >= refill_s * 0.9
        assert (await ledger(client, "crm"))["accepted"] == {"k0": 1, "k1": 1, "late": 1}

    run(scenario, SimConfig(rate=rate, per=per))


def test_rate_can_be_changed_at_run_time() -> None:
    async def scenario(client: Client) -> None:
        async with client.put("/_control/rate", json={"rate": 1, "per": 60}) as response:
            assert (response.status, await response.json()) == (200, {"rate": 1, "per": 60.0})
        assert (await deliver(client, "crm", {}, key="a"))[0] == 200
        status, _, headers = await deliver(client, "crm", {}, key="b")
        assert status == 429 and 1 <= int(headers["Retry-After"]) <= 60
        async with client.put("/_control/rate", json={"rate": None}) as response:
            assert response.status == 200
        assert (await deliver(client, "crm", {}, key="b"))[0] == 200
        async with client.put("/_control/rate", json={"rate": 0}) as response:
            assert (response.status, (await response.json())["error"]) == (400, "invalid_rate")

    run(scenario)


# -- fault rules -------------------------------------------------------------------------------


def test_a_rule_with_times_2_fails_twice_then_succeeds() -> None:
    async def scenario(client: Client) -> None:
        await add_rules(client, {"match": {"key": "k1"}, "status": 503, "times": 2, "retry_after": "2"})
        for _ in range(2):
            status, body, headers = await deliver(client, "crm", {}, key="k1")
            assert (status, body, headers["Retry-After"]) == (
                503,
                {"error": "unavailable", "idempotency_key": "k1"},
                "2",
            )
        assert (await deliver(client, "crm", {}, key="k1"))[0] == 200
        assert (await deliver(client, "crm", {}, key="k1"))[1]["duplicate"] is True
        seen = await ledger(client)
        assert seen["accepted"] == {"k1": 1} and seen["by_status"] == {"200": 2, "503": 2}
        async with client.get("/_control/rules") as response:
            assert (await response.json())["rules"][0]["fired"] == 2

    run(scenario)


def test_a_batch_with_some_failing_records_is_207() -> None:
    async def scenario(client: Client) -> None:
        await add_rules(
            client,
            {"match": {"field": "customer.tier", "equals": "gold"}, "status": 400, "body": {"error": "bad_tier"}},
            {"destination": "crm", "match": {"key": "k2"}, "status": 429, "times": 1, "retry_after": "3"},
        )
        records = [
            {"idempotency_key": "k0", "customer": {"tier": "gold"}},
            {"idempotency_key": "k1", "customer": {"tier": "free"}},
            {"idempotency_key": "k2"},
        ]
        status, body, _ = await post(client, "/v1/crm", {"records": records})
        assert status == 207
        assert body == {
            "results": [
                {"index": 0, "status": 400, "idempotency_key": "k0", "error": "bad_tier"},
                {"index": 1, "status": 200, "idempotency_key": "k1"},
                {"index": 2, "status": 429, "idempotency_key": "k2", "error": "rate_limited", "retry_after": "3"},
            ]
        }
        assert (await ledger(client, "crm"))["accepted"] == {"k1": 1}
        status, body, _ = await post(client, "/v1/crm", {"records": records[1:]})
        assert status == 200 and body["results"][0]["duplicate"] is True
        assert (await ledger(client, "crm"))["accepted"] == {"k1": 1, "k2": 1}

    run(scenario)


def test_a_batch_where_every_record_fails_alike_takes_that_status() -> None:
    async def scenario(client: Client) -> None:
        await add_rules(client, {"match": {}, "status": 503, "times": 2, "retry_after": "5"})
        records = [{"idempotency_key": "a"}, {"idempotency_key": "b"}]
        status, body, headers = await post(client, "/v1/crm", {"records": records})
        assert (status, body["error"], headers["Retry-After"]) == (503, "unavailable", "5")
        assert [r["status"] for r in body["results"]] == [503, 503]
        assert (await post(client, "/v1/crm", {"records": records}))[0] == 200
        assert (await ledger(client))["accepted"] == {"a": 1, "b": 1}

    run(scenario)


def test_a_slow_success_is_accepted_even_when_the_client_gives_up() -> None:
    async def scenario(client: Client) -> None:
        await add_rules(client, {"match": {"key": "k1"}, "status": 200, "delay_ms": 500, "times": 1})
        with pytest.raises(asyncio.TimeoutError):
            await client.post(
                "/v1/crm", json={}, headers={"Idempotency-Key": "k1"}, timeout=aiohttp.ClientTimeout(total=0.1)
            )
        status, body, _ = await deliver(client, "crm", {}, key="k1")  # the retry after the timeout
        assert (status, body.get("duplicate")) == (200, True)
        assert (await ledger(client))["accepted"] == {"k1": 1}

    run(scenario)


def test_bad_rules_are_400_and_rules_can_be_cleared() -> None:
    async def scenario(client: Client) -> None:
        status, body, _ = await post(client, "/_control/rules", {"rules": [{"status": 500}, {"status": "no"}]})
        assert (status, body["error"]) == (400, "invalid_rule") and "rules[1]" in body["message"]
        await add_rules(client, {"status": 500})
        assert (await deliver(client, "crm", {}, key="k"))[0] == 500
        async with client.delete("/_control/rules") as response:
            assert response.status == 200
        assert (await deliver(client, "crm", {}, key="k"))[0] == 200

    run(scenario)


# -- auth --------------------------------------------------------------------------------------


def test_oauth_token_is_required_and_expire_tokens_revokes_it() -> None:
    async def scenario(client: Client) -> None:
        assert (await deliver(client, "crm", {}, key="k0"))[:2] == (401, {"error": "invalid_token"})
        # RFC 6749 §5.2 errors, each with an error_description for people
        status, body = await token(client, client_secret="wrong")
        assert (status, body["error"]) == (401, "invalid_client") and body["error_description"]
        status, body = await token(client, grant_type="password")
        assert (status, body["error"]) == (400, "unsupported_grant_type")
        async with client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": "Basic !!not-base64"}
        ) as response:
            assert (response.status, (await response.json())["error"]) == (401, "invalid_client")
            assert response.headers["WWW-Authenticate"] == 'Basic realm="partner-sim"'  # Basic was tried
        status, issued = await token(client)
        assert status == 200 and issued["token_type"] == "Bearer" and issued["expires_in"] == 600
        bearer = f"Bearer {issued['access_token']}"
        assert (await deliver(client, "crm", {}, key="k1", Authorization=bearer))[0] == 200
        basic = {"Authorization": aiohttp.encode_basic_auth("sim-client", "sim-secret")}
        async with client.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=basic) as response:
            assert response.status == 200
            second = f"Bearer {(await response.json())['access_token']}"
        async with client.post("/_control/expire_tokens") as response:
            assert (response.status, await response.json()) == (200, {"expired": 2})
        for old in (bearer, second):
            assert (await deliver(client, "crm", {}, key="k2", Authorization=old))[0] == 401
        fresh = f"Bearer {(await token(client))[1]['access_token']}"
        assert (await deliver(client, "crm", {}, key="k2", Authorization=fresh))[0] == 200
        seen = await ledger(client)
        assert seen["tokens_issued"] == 3 and seen["by_status"] == {"200": 2, "401": 3}
        assert seen["accepted"] == {"k1": 1, "k2": 1}

    run(scenario, SimConfig(require_token=True, token_ttl=600))


def test_tokens_expire_after_their_ttl_and_a_401_rule_revokes_one() -> None:
    async def scenario(client: Client) -> None:
        bearer = f"Bearer {(await token(client))[1]['access_token']}"

        async def rejected() -> bool:
            return (await deliver(client, "crm", {}, key="k", Authorization=bearer))[0] == 401

        await eventually(rejected, deadline_s=10, what="the token's TTL to pass")

    run(scenario, SimConfig(require_token=True, token_ttl=0.2))

    async def revoked(client: Client) -> None:
        await add_rules(client, {"match": {"key": "k"}, "status": 401, "times": 1})
        bearer = f"Bearer {(await token(client))[1]['access_token']}"
        status, body, headers = await deliver(client, "crm", {}, key="k", Authorization=bearer)
        assert (status, body["error"]) == (401, "invalid_token") and "invalid_token" in headers["WWW-Authenticate"]
        # The rule is spent, but the token it saw is gone: only a fresh token gets through.
        assert (await deliver(client, "crm", {}, key="k", Authorization=bearer))[0] == 401
        fresh = f"Bearer {(await token(client))[1]['access_token']}"
        assert (await deliver(client, "crm", {}, key="k", Authorization=fresh))[0] == 200

    run(revoked, SimConfig(require_token=True))


def test_api_key_in_either_header() -> None:
    async def scenario(client: Client) -> None:
        assert (await deliver(client, "crm", {}, key="a"))[:2] == (401, {"error": "invalid_api_key"})
        assert (await deliver(client, "crm", {}, key="a", X_Api_Key="nope"))[0] == 401
        assert (await deliver(client, "crm", {}, key="a", X_Api_Key="k-123"))[0] == 200
        assert (await deliver(client, "crm", {}, key="b", Authorization="k-123"))[0] == 200
        assert (await ledger(client))["accepted"] == {"a": 1, "b": 1}

    run(scenario, SimConfig(api_key="k-123"))


# -- accounts ----------------------------------------------------------------------------------

ACCOUNTS = {"acme": "key-a", "globex": "key-b"}


NO_BODY = object()


async def control(client: Client, method: str, path: str, body: object = NO_BODY) -> tuple[int, Any]:
    """A control call, with ``body`` as JSON (``None`` is sent as ``null``): (status, decoded body)."""
    data = json.dumps(body) if body is not NO_BODY else None
    async with client.request(method, path, data=data) as response:
        return response.status, await response.json()


def test_accounts_tell_which_account_each_request_came_from() -> None:
    async def scenario(client: Client) -> None:
        basic = aiohttp.encode_basic_auth("acme", "key-a")
        assert (await deliver(client, "crm", {}, key="a1", Authorization="Bearer key-a"))[0] == 200
        assert (await deliver(client, "crm", {}, key="a2", X_Api_Key="key-a"))[0] == 200
        assert (await deliver(client, "crm", {}, key="a3", Authorization="key-a"))[0] == 200
        assert (await deliver(client, "billing", {}, key="a4", Authorization=basic))[0] == 200
        batch = {"records": [{"idempotency_key": "b1"}, {"idempotency_key": "b2"}]}
        assert (await post(client, "/v1/crm", batch, {"X-Api-Key": "key-b"}))[0] == 200
        for headers in ({}, {"X-Api-Key": "key-c"}, {"Authorization": "Bearer key-"},
                        {"Authorization": aiohttp.encode_basic_auth("key-a", "wrong")}):
            status, body, _ = await deliver(client, "crm", {}, key="x", **headers)
            assert (status, body) == (401, {"error": "invalid_api_key"}), headers
        crm = await ledger(client, "crm")
        assert [(r["idempotency_key"], r["account"]) for r in crm["records"]] == [
            ("a1", "acme"), ("a2", "acme"), ("a3", "acme"), ("b1", "globex"), ("b2", "globex")]
        assert crm["requests_by_account"] == {"acme": 3, "globex": 1}  # requests, not records; 401s have none
        assert crm["by_status"] == {"200": 4, "401": 4}
        assert (await ledger(client, "billing"))["requests_by_account"] == {"acme": 1}
        assert (await ledger(client))["requests_by_account"] == {"acme": 4, "globex": 1}

    run(scenario, SimConfig(accounts=ACCOUNTS))


def test_without_accounts_records_have_no_account() -> None:
    async def scenario(client: Client) -> None:
        assert (await deliver(client, "crm", {}, key="k", X_Api_Key="k-123"))[0] == 200
        seen = await ledger(client, "crm")
        assert seen["records"][0]["account"] is None and seen["requests_by_account"] == {}

    run(scenario, SimConfig(api_key="k-123"))


def test_accounts_set_at_run_time_replace_the_api_key_until_cleared() -> None:
    async def scenario(client: Client) -> None:
        assert await control(client, "PUT", "/_control/accounts", ACCOUNTS) == (
            200, {"accounts": ["acme", "globex"], "enforced": True})
        assert (await deliver(client, "crm", {}, key="a", X_Api_Key="k-123"))[0] == 401
        assert (await deliver(client, "crm", {}, key="a", X_Api_Key="key-b"))[0] == 200
        assert await control(client, "PUT", "/_control/accounts", {"initech": "key-i"}) == (
            200, {"accounts": ["initech"], "enforced": True})
        assert (await deliver(client, "crm", {}, key="b", X_Api_Key="key-b"))[0] == 401  # replaced, not merged
        assert (await deliver(client, "crm", {}, key="b", Authorization="Bearer key-i"))[0] == 200
        assert await control(client, "GET", "/_control/accounts") == (200, {"accounts": ["initech"], "enforced": True})
        assert await control(client, "PUT", "/_control/accounts", {}) == (200, {"accounts": [], "enforced": False})
        assert (await deliver(client, "crm", {}, key="c", X_Api_Key="key-i"))[0] == 401
        assert (await deliver(client, "crm", {}, key="c", X_Api_Key="k-123"))[0] == 200
        records = [(r["idempotency_key"], r["account"]) for r in (await ledger(client, "crm"))["records"]]
        assert records == [("a", "globex"), ("b", "initech"), ("c", None)]

    run(scenario, SimConfig(api_key="k-123"))


def test_revoking_an_account_refuses_its_credential_only() -> None:
    async def scenario(client: Client) -> None:
        assert await control(client, "POST", "/_control/accounts/acme/revoke") == (
            200, {"accounts": ["globex"], "enforced": True})
        assert (await deliver(client, "crm", {}, key="k", Authorization="Bearer key-a"))[:2] == (
            401, {"error": "invalid_api_key"})
        assert (await deliver(client, "crm", {}, key="k", Authorization="Bearer key-b"))[0] == 200
        assert await control(client, "POST", "/_control/accounts/acme/revoke") == (404, {"error": "unknown_account"})
        # The last account revoked: its key still fails, and so does a request with no key at all.
        assert (await control(client, "POST", "/_control/accounts/globex/revoke"))[0] == 200
        assert (await deliver(client, "crm", {}, key="k2", Authorization="Bearer key-b"))[0] == 401
        assert (await deliver(client, "crm", {}, key="k2"))[0] == 401
        assert (await control(client, "POST", "/_control/reset"))[0] == 200  # the start-up accounts again
        assert (await deliver(client, "crm", {}, key="k2", Authorization="Bearer key-a"))[0] == 200

    run(scenario, SimConfig(accounts=ACCOUNTS))


def test_an_account_rule_refuses_that_account_only() -> None:
    async def scenario(client: Client) -> None:
        await add_rules(client, {"destination": "crm", "account": "acme", "status": 401})
        status, body, _ = await deliver(client, "crm", {}, key="k", X_Api_Key="key-a")
        assert (status, body["error"]) == (401, "invalid_token")
        assert (await deliver(client, "crm", {}, key="k", X_Api_Key="key-b"))[0] == 200
        assert (await deliver(client, "billing", {}, key="k", X_Api_Key="key-a"))[0] == 200
        status, listed = await control(client, "GET", "/_control/rules")
        assert listed["rules"][0]["account"] == "acme" and listed["rules"][0]["fired"] == 1
        assert (await ledger(client, "crm"))["requests_by_account"] == {"acme": 1, "globex": 1}
        status, body, _ = await post(client, "/_control/rules", {"rules": [{"account": ["acme"], "status": 401}]})
        assert (status, body["error"]) == (400, "invalid_rule") and "account must be" in body["message"]

    run(scenario, SimConfig(accounts=ACCOUNTS))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (["acme", "key-a"], "the body must be an object of account name to credential"),
        ("acme=key-a", "the body must be an object of account name to credential"),
        (None, "the body must be an object of account name to credential"),
        ({"acme": 7}, "the credential of 'acme' must be a non-empty string"),
        ({"acme": {"key": "key-a"}}, "the credential of 'acme' must be a non-empty string"),
        ({"acme": True}, "the credential of 'acme' must be a non-empty string"),
        ({"acme": "key\r\nX-Evil: 1"}, "the credential of 'acme' must be printable, on one line, "
                                        "without leading or trailing spaces"),
        ({"n" * 1_000_000: "key"}, f"{'n' * 40 + '...'!r} is not an account name: an account name is 1-128 letters, "
                                   "digits, '.', '_' or '-', starting with a letter or digit"),
        ({"acme": "same", "globex": "same"}, "accounts 'acme' and 'globex' have the same credential"),
    ],
)
def test_hostile_accounts_bodies_are_a_precise_400_and_change_nothing(body: object, message: str) -> None:
    async def scenario(client: Client) -> None:
        assert await control(client, "PUT", "/_control/accounts", body) == (
            400, {"error": "invalid_accounts", "message": message})
        assert await control(client, "GET", "/_control/accounts") == (200, {"accounts": ["acme"], "enforced": True})
        assert (await deliver(client, "crm", {}, key="k", X_Api_Key="only-acme"))[0] == 200

    run(scenario, SimConfig(accounts={"acme": "only-acme"}))


def test_accounts_endpoint_refuses_what_is_not_json_and_unknown_revokes() -> None:
    async def scenario(client: Client) -> None:
        async with client.put("/_control/accounts", data=b"{not json") as response:
            assert (response.status, await response.json()) == (400, {"error": "invalid_json"})
        assert await control(client, "POST", f"/_control/accounts/{'x' * 5000}/revoke") == (
            404, {"error": "unknown_account"})
        assert (await control(client, "DELETE", "/_control/accounts"))[0] == 405

    run(scenario, SimConfig(accounts=ACCOUNTS))


def test_bad_accounts_in_the_config_are_refused() -> None:
    with pytest.raises(ConfigError, match="accounts: accounts 'a' and 'b' have the same credential"):
        create_app(SimConfig(accounts={"a": "same", "b": "same"}))


# -- control -----------------------------------------------------------------------------------


def test_reset_clears_ledger_rules_tokens_and_buckets() -> None:
    async def scenario(client: Client) -> None:
        bearer = f"Bearer {(await token(client))[1]['access_token']}"
        await add_rules(client, {"match": {"key": "bad"}, "status": 500})
        assert (await deliver(client, "crm", {}, key="k", Authorization=bearer))[0] == 200
        assert (await deliver(client, "crm", {}, key="k2", Authorization=bearer))[0] == 429
        assert (await deliver(client, "billing", {}, key="bad", Authorization=bearer))[0] == 500
        async with client.put("/_control/rate", json={"rate": 5, "per": 60}) as response:
            assert response.status == 200
        async with client.post("/_control/reset") as response:
            assert response.status == 200
        assert await ledger(client) == {
            "accepted": {},
            "duplicates": {},
            "records": [],
            "requests": 0,
            "by_status": {},
            "requests_by_account": {},
            "bodies": [],
            "tokens_issued": 0,
            "token_requests": 0,
            "revocations": 0,
        }
        assert (await deliver(client, "crm", {}, key="k", Authorization=bearer))[0] == 401
        fresh = f"Bearer {(await token(client))[1]['access_token']}"
        # A full bucket again, under the start-up limit (1 per hour), and no rule for "bad".
        status, body, _ = await deliver(client, "crm", {}, key="k", Authorization=fresh)
        assert (status, body.get("duplicate")) == (200, None)
        assert (await deliver(client, "crm", {}, key="k2", Authorization=fresh))[0] == 429
        assert (await deliver(client, "billing", {}, key="bad", Authorization=fresh))[0] == 200

    run(scenario, SimConfig(require_token=True, rate=1, per=3600))


def test_healthz() -> None:
    async def scenario(client: Client) -> None:
        async with client.get("/healthz") as response:
            assert response.status == 200

    run(scenario)


# -- the CLI -----------------------------------------------------------------------------------


def read_line(proc: subprocess.Popen[str], deadline_s: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(deadline_s):
            raise AssertionError(f"no output from {proc.args!r} within {deadline_s}s")
    return proc.stdout.readline()


def test_cli_prints_ready_and_stops_on_sigterm() -> None:
    with subprocess.Popen(  # leaving the block closes the stdout pipe
        [sys.executable, "-m", "router", "sim", "partner", "--port", "0", "--rate", "100"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as proc:
        try:
            line = read_line(proc, deadline_s=30)
            found = re.fullmatch(r"READY partner=(http://127\.0\.0\.1:(\d+))\n", line)
            assert found and int(found[2]) > 0, line
            with urllib.request.urlopen(found[1] + "/healthz", timeout=10) as response:
                assert response.status == 200
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
            assert proc.stdout is not None and proc.stdout.read() == ""  # exactly one line
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def test_cli_serves_metrics_on_router_metrics_port(tmp_path: pathlib.Path) -> None:
    """Prometheus in docker-compose scrapes the simulator on ROUTER_METRICS_PORT like the workers."""
    import urllib.request

    from router.procs import free_port
    from support.services import wait_for

    port = free_port()
    out = tmp_path / "sim.out"
    with open(out, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "router", "sim", "partner", "--port", "0"], stdout=f,
                                stderr=subprocess.STDOUT, env={**os.environ, "ROUTER_METRICS_PORT": str(port)})
    try:
        wait_for(lambda: "READY" in out.read_text(), deadline_s=30, what="READY")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert resp.status == 200
            assert b"# TYPE" in resp.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_cli_account_flags_and_control(tmp_path: pathlib.Path) -> None:
    """``--account`` as a user gives it, driven through support.delivering's Partner."""

    def deliver_as(url: str, key: str, credential: str) -> int:
        req = urllib.request.Request(f"{url}/v1/crm", data=b"{}", method="POST",
                                     headers={"Idempotency-Key": key, "X-Api-Key": credential})
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as refused:
            refused.close()
            return int(refused.code)

    with partner_sim(tmp_path, "--account", "acme=key-a", "--account", "globex=key=b") as partner:
        assert deliver_as(partner.url, "k1", "key-a") == 200
        assert deliver_as(partner.url, "k2", "key=b") == 200
        partner.revoke("acme")
        assert deliver_as(partner.url, "k3", "key-a") == 401
        partner.accounts({"initech": "key-i"})
        assert deliver_as(partner.url, "k3", "key-i") == 200
        seen = partner.ledger("crm")
        assert [r["account"] for r in seen["records"]] == ["acme", "globex", "initech"]
        assert seen["requests_by_account"] == {"acme": 1, "globex": 1, "initech": 1}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--account", "acme"], "--account takes NAME=CREDENTIAL, not 'acme'"),
        (["--account", "acme=s3cret-1", "--account", "acme=s3cret-2"], "--account 'acme' is given twice"),
        (["--account", "a=s3cret-1", "--account", "b=s3cret-1"], "accounts 'a' and 'b' have the same credential"),
        (["--account", "a b=s3cret-1"], "'a b' is not an account name"),
    ],
)
def test_cli_bad_account_flags_exit_2_without_printing_the_credential(args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "router", "sim", "partner", "--port", "0", *args],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "config.invalid" in done.stderr and message in done.stderr, done.stderr
    assert "s3cret" not in done.stderr and done.stdout == ""

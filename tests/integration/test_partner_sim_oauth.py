"""The partner simulator's OAuth 2.0 authorization server over real HTTP: the connect flow a router
would run (authorize page, consent, code, token, deliveries, refresh, revocation) and its faults.

The flows start ``router sim partner`` as a process (support.delivering.partner_sim) and drive it
with urllib, following no redirect: the test plays the browser and the router's callback. Hostile
requests run against an in-process simulator (aiohttp's TestServer), as in test_partner_sim.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import re
import secrets
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.partner_sim.partner import SimConfig, create_app
from support.delivering import Partner, partner_sim

REDIRECT = "http://127.0.0.1:8765/callback?tenant=acme"
CLIENT_FORM = {"client_id": "sim-client", "client_secret": "sim-secret"}
BASIC = {"Authorization": "Basic " + base64.b64encode(b"sim-client:sim-secret").decode()}


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 302 itself is the answer under test


OPENER = urllib.request.build_opener(_NoRedirects)


def http(method: str, url: str, form: Mapping[str, str] | None = None, json: object = None,
         headers: Mapping[str, str] | None = None) -> tuple[int, Message, bytes]:
    """One request, redirects not followed, errors returned like answers: (status, headers, body)."""
    data, sent = None, dict(headers or {})
    if form is not None:
        data, sent["Content-Type"] = urlencode(form).encode(), "application/x-www-form-urlencoded"
    elif json is not None:
        data, sent["Content-Type"] = orjson.dumps(json), "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with OPENER.open(request, timeout=10) as response:
            return int(response.status), response.headers, response.read()
    except urllib.error.HTTPError as refused:
        with refused:
            return int(refused.code), refused.headers, refused.read()


def deliver(partner: Partner, access_token: str, key: str) -> int:
    status, _, _ = http("POST", f"{partner.url}/v1/crm", json={"n": key},
                        headers={"Authorization": f"Bearer {access_token}", "Idempotency-Key": key})
    return status


def token(partner: Partner, form: Mapping[str, str], headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
    status, _, body = http("POST", f"{partner.url}/oauth/token", form=form, headers=headers)
    return status, orjson.loads(body)


def hidden_fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value)
            for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)}


@dataclass
class Connect:
    """One run of the connect flow, as the router and a user's browser would do it."""

    partner: Partner
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(64)[:64])
    state: str = field(default_factory=lambda: secrets.token_urlsafe(12))

    @property
    def challenge(self) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(self.verifier.encode()).digest()).rstrip(b"=").decode()

    def authorize(self, **changes: str) -> tuple[int, Message, str]:
        query = {"response_type": "code", "client_id": "sim-client", "redirect_uri": REDIRECT, "state": self.state,
                 "code_challenge": self.challenge, "code_challenge_method": "S256", "scope": "deliver", **changes}
        status, headers, body = http("GET", f"{self.partner.url}/oauth/authorize?{urlencode(query)}")
        return status, headers, body.decode()

    def consent(self, account: str, decision: str = "allow") -> dict[str, list[str]]:
        """The consent page, answered: the query the browser is sent back to ``REDIRECT`` with."""
        status, headers, page = self.authorize(login_hint=account)
        assert status == 200 and headers["Content-Type"].startswith("text/html"), page
        assert f'name="account" value="{account}"' in page and ">Allow</button>" in page and ">Deny</button>" in page
        form = {**hidden_fields(page), "account": account, "decision": decision}
        status, headers, _ = http("POST", f"{self.partner.url}/oauth/authorize", form=form)
        assert status == 302, status
        location = headers["Location"]
        assert location.startswith(REDIRECT + "&"), location  # the redirect URI's own query is kept
        answer = parse_qs(urlsplit(location).query)
        assert answer["state"] == [self.state] and answer["tenant"] == ["acme"]
        return answer

    def exchange(self, code: str, verifier: str | None = None) -> tuple[int, Any]:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                "code_verifier": verifier or self.verifier}
        return token(self.partner, form, BASIC)

    def connect(self, account: str) -> dict[str, Any]:
        status, tokens = self.exchange(self.consent(account)["code"][0])
        assert status == 200, tokens
        return dict(tokens)


def refresh(partner: Partner, refresh_token: str) -> tuple[int, Any]:
    return token(partner, {"grant_type": "refresh_token", "refresh_token": refresh_token, **CLIENT_FORM})


# -- the flow, with the simulator as a process ----------------------------------------------------


def test_connect_flow_end_to_end(tmp_path: Path) -> None:
    with partner_sim(tmp_path, "--require-token", "--token-ttl", "600") as partner:
        first = Connect(partner).connect("acme")
        assert first["token_type"] == "Bearer" and first["expires_in"] == 600 and first["scope"] == "deliver"
        assert deliver(partner, first["access_token"], "k1") == 200

        status, second = refresh(partner, first["refresh_token"])
        assert status == 200 and second["refresh_token"] != first["refresh_token"], second
        assert second["access_token"] != first["access_token"] and second["scope"] == "deliver"
        assert deliver(partner, second["access_token"], "k2") == 200
        ledger = partner.ledger("crm")
        assert [(r["idempotency_key"], r["account"]) for r in ledger["records"]] == [("k1", "acme"), ("k2", "acme")]
        assert ledger["requests_by_account"] == {"acme": 2}

        # RFC 7009: revoking the refresh token ends the grant, its access tokens included.
        form = {"token": second["refresh_token"], "token_type_hint": "refresh_token", **CLIENT_FORM}
        assert http("POST", f"{partner.url}/oauth/revoke", form=form)[0] == 200
        assert deliver(partner, second["access_token"], "k3") == 401
        assert deliver(partner, first["access_token"], "k3") == 401
        assert refresh(partner, second["refresh_token"]) == (400, {
            "error": "invalid_grant", "error_description": "the refresh token is unknown or revoked"})
        assert http("POST", f"{partner.url}/oauth/revoke", form={"token": "never-issued", **CLIENT_FORM})[0] == 200
        ledger = partner.ledger()
        assert ledger["revocations"] == 1 and ledger["tokens_issued"] == 2


def test_rotation_reuse_pkce_state_and_code_reuse(tmp_path: Path) -> None:
    with partner_sim(tmp_path, "--require-token") as partner:
        # A rotated refresh token presented again is refused, and ends the grant (OAuth security BCP).
        tokens = Connect(partner).connect("acme")
        status, rotated = refresh(partner, tokens["refresh_token"])
        assert status == 200
        status, body = refresh(partner, tokens["refresh_token"])
        assert (status, body["error"]) == (400, "invalid_grant") and "rotated" in body["error_description"]
        assert refresh(partner, rotated["refresh_token"])[1]["error"] == "invalid_grant"
        assert deliver(partner, rotated["access_token"], "k1") == 401

        # PKCE: the wrong verifier is invalid_grant, and spends the code.
        flow = Connect(partner)
        code = flow.consent("globex")["code"][0]
        status, body = flow.exchange(code, verifier=Connect(partner).verifier)
        assert (status, body["error"]) == (400, "invalid_grant") and "code_verifier" in body["error_description"]
        assert flow.exchange(code)[1]["error"] == "invalid_grant"

        # A code is single-use: its second exchange is refused and revokes what the first one got.
        flow = Connect(partner)
        code = flow.consent("globex")["code"][0]
        status, tokens = flow.exchange(code)
        assert status == 200 and deliver(partner, tokens["access_token"], "k2") == 200
        status, body = flow.exchange(code)
        assert (status, body["error"]) == (400, "invalid_grant") and "already used" in body["error_description"]
        assert deliver(partner, tokens["access_token"], "k3") == 401

        # Deny: access_denied, with the state, and no code.
        answer = Connect(partner).consent("globex", decision="deny")
        assert answer["error"] == ["access_denied"] and "code" not in answer
        assert [r["account"] for r in partner.ledger()["records"]] == ["globex"]


def test_partner_revokes_a_grant_and_the_token_endpoint_fails(tmp_path: Path) -> None:
    with partner_sim(tmp_path, "--require-token") as partner:
        acme, globex = Connect(partner).connect("acme"), Connect(partner).connect("globex")
        partner.revoke_grant("acme")
        assert refresh(partner, acme["refresh_token"])[1]["error"] == "invalid_grant"
        assert deliver(partner, acme["access_token"], "k1") == 401
        assert deliver(partner, globex["access_token"], "k1") == 200  # another tenant's grant is untouched
        with pytest.raises(urllib.error.HTTPError, match="404"):
            partner.revoke_grant("acme")  # it has none left

        requests = partner.ledger()["token_requests"]
        partner.fail_token(2)
        for _ in range(2):
            status, body = refresh(partner, globex["refresh_token"])
            assert (status, body["error"]) == (503, "temporarily_unavailable")
        status, rotated = refresh(partner, globex["refresh_token"])  # the failures spent nothing
        assert status == 200 and deliver(partner, rotated["access_token"], "k2") == 200
        assert partner.ledger()["token_requests"] == requests + 3


# -- hostile requests, in process -------------------------------------------------------------------

Client = TestClient[web.Request, web.Application]


def run(scenario: Callable[[Client], Awaitable[None]], config: SimConfig | None = None) -> None:
    async def main() -> None:
        async with TestClient(TestServer(create_app(config or SimConfig()))) as client:
            await scenario(client)

    asyncio.run(main())


GOOD = {"response_type": "code", "client_id": "sim-client", "redirect_uri": REDIRECT, "state": "s",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"}


@pytest.mark.parametrize(("query", "message"), [
    ({**GOOD, "client_id": "evil"}, "unknown client_id"),
    ({**GOOD, "redirect_uri": "https://evil.example/cb"}, "redirect_uri must be http://127.0.0.1:PORT"),
    ("client_id=sim-client&redirect_uri=%FF", "percent-encoded as UTF-8"),
    ("client_id=sim-client&state=%C3", "percent-encoded as UTF-8"),
    ("", "unknown client_id"),
])
def test_an_untrusted_authorization_request_is_an_html_page_never_a_redirect(
    query: dict[str, str] | str, message: str
) -> None:
    async def scenario(client: Client) -> None:
        raw = query if isinstance(query, str) else urlencode(query)
        async with client.get(f"/oauth/authorize?{raw}", allow_redirects=False) as response:
            page = await response.text()
            assert response.status == 400 and response.content_type == "text/html", page
            assert html.escape(message) in page and "Location" not in response.headers
            assert response.headers["X-Frame-Options"] == "DENY"

    run(scenario)


@pytest.mark.parametrize(("changes", "error"), [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge": ""}, "invalid_request"),
])
def test_a_bad_request_of_a_known_client_is_redirected_with_error_and_state(
    changes: dict[str, str], error: str
) -> None:
    async def scenario(client: Client) -> None:
        async with client.get("/oauth/authorize", params={**GOOD, **changes}, allow_redirects=False) as response:
            assert response.status == 302
            answer = parse_qs(urlsplit(response.headers["Location"]).query)
            assert answer["error"] == [error] and answer["state"] == ["s"] and answer["tenant"] == ["acme"]

    run(scenario)


def test_consent_with_accounts_offers_them_and_the_token_delivers_as_that_account() -> None:
    async def scenario(client: Client) -> None:
        async with client.get("/oauth/authorize", params={**GOOD, "login_hint": "<b>"}) as response:
            page = await response.text()
            assert response.status == 200 and '<option value="acme">' in page and 'value=""' in page
        form = {**GOOD, "decision": "allow", "account": "initech"}
        async with client.post("/oauth/authorize", data=form, allow_redirects=False) as response:
            page = await response.text()
            assert response.status == 400 and "there is no account &#x27;initech&#x27;" in page
            assert "<form" in page  # the consent page again, to choose another
        async with client.post("/oauth/authorize", data={**form, "account": "acme"}, allow_redirects=False) as response:
            code = parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]
        fields = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                  "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", **CLIENT_FORM}
        async with client.post("/oauth/token", data=fields) as response:
            access = (await response.json())["access_token"]
        headers = {"Authorization": f"Bearer {access}", "Idempotency-Key": "k"}
        async with client.post("/v1/crm", json={}, headers=headers) as response:
            assert response.status == 200
        async with client.get("/_ledger") as response:
            assert [r["account"] for r in (await response.json())["records"]] == ["acme"]
        async with client.post("/_control/accounts/acme/revoke") as response:
            assert response.status == 200
        async with client.post("/v1/crm", json={}, headers={**headers, "Idempotency-Key": "k2"}) as response:
            assert response.status == 401  # the account is gone, so its grant's token is refused too

    run(scenario, SimConfig(accounts={"acme": "key-a", "globex": "key-b"}))


@pytest.mark.parametrize(("path", "method", "body", "content_type", "status", "error"), [
    ("/oauth/token", "POST", b'{"grant_type": "client_credentials"}', "application/json", 400, "invalid_request"),
    ("/oauth/token", "POST", b"grant_type=client_credentials&client_id=sim-client&client_secret=%FF",
     "application/x-www-form-urlencoded", 400, "invalid_request"),
    ("/oauth/token", "POST", b"grant_type=authorization_code&code=x", "application/x-www-form-urlencoded", 401,
     "invalid_client"),
    ("/oauth/token", "GET", b"", "", 405, "method_not_allowed"),
    ("/oauth/revoke", "POST", b"token=x", "application/x-www-form-urlencoded", 401, "invalid_client"),
    ("/oauth/revoke", "POST", b"\xff" * 70_000, "application/x-www-form-urlencoded", 400, "invalid_request"),
    ("/_control/oauth/revoke_grant", "POST", b"{not json", "application/json", 400, "invalid_json"),
    ("/_control/oauth/revoke_grant", "POST", b'{"account": ["acme"]}', "application/json", 400, "invalid_request"),
    ("/_control/oauth/revoke_grant", "POST", b'{"account": "acme"}', "application/json", 404, "unknown_grant"),
    ("/_control/oauth/fail_token", "POST", b'{"times": 1e400, "status": 503}', "application/json", 400,
     "invalid_json"),
    ("/_control/oauth/fail_token", "POST", b'{"times": true, "status": 503}', "application/json", 400,
     "invalid_token_fault"),
    ("/_control/oauth/fail_token", "POST", b'{"times": 1, "status": 200}', "application/json", 400,
     "invalid_token_fault"),
    ("/_control/oauth/fail_token", "POST", b"[]", "application/json", 400, "invalid_token_fault"),
])
def test_hostile_token_revoke_and_control_requests_get_a_precise_json_4xx(
    path: str, method: str, body: bytes, content_type: str, status: int, error: str
) -> None:
    async def scenario(client: Client) -> None:
        headers = {"Content-Type": content_type} if content_type else {}
        async with client.request(method, path, data=body, headers=headers) as response:
            assert response.status == status and response.content_type == "application/json"
            assert (await response.json())["error"] == error

    run(scenario)


def test_a_hostile_consent_post_is_an_html_400() -> None:
    async def scenario(client: Client) -> None:
        for body, content_type in ((b'{"decision": "allow"}', "application/json"),
                                   (b"decision=allow&account=%FF", "application/x-www-form-urlencoded"),
                                   (urlencode({**GOOD, "decision": "maybe"}).encode(),
                                    "application/x-www-form-urlencoded")):
            async with client.post("/oauth/authorize", data=body, headers={"Content-Type": content_type},
                                   allow_redirects=False) as response:
                assert response.status == 400 and response.content_type == "text/html", body

    run(scenario)

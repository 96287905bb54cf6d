"""Outgoing credentials: none, API key, bearer, basic, OAuth2 client credentials, Standard Webhooks signing."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from standardwebhooks.webhooks import Webhook

from router import codes
from router.errors import DeliverError


class AuthFailed(DeliverError):
    """Credentials were refused even after a refresh: the integration needs to be reconnected."""

    code = codes.DELIVER_AUTH_FAILED


class Auth:
    """Adds credentials to a request; ``refresh`` is called once after a 401."""

    async def headers(self, session: aiohttp.ClientSession, body: bytes, msg_id: str) -> dict[str, str]:
        return {}

    async def refresh(self, session: aiohttp.ClientSession, seen: int | None = None) -> bool:
        """Get new credentials; False when there is nothing to refresh (a 401 is then final).
        ``seen``: the credentials' ``version`` the refused request carried."""
        return False

    version = 0


class StaticHeader(Auth):
    def __init__(self, name: str, value: str) -> None:
        self._name, self._value = name, value

    async def headers(self, session: aiohttp.ClientSession, body: bytes, msg_id: str) -> dict[str, str]:
        return {self._name: self._value}


class TokenUnavailable(DeliverError):
    """The token endpoint failed in a way that passes (5xx, 429, unreachable, unreadable): retried
    with a backoff, never a reason to reconnect."""

    code = codes.DELIVER_TOKEN_UNAVAILABLE


# Token endpoint answers that mean the credentials themselves are refused (RFC 6749 §5.2).
REFUSED = frozenset({"invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
                     "invalid_scope"})
TOKEN_BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)


class OAuth2ClientCredentials(Auth):
    """Token cached until shortly before expiry; one refresh per 401, one fetch at a time.

    Only the token endpoint refusing the credentials (``invalid_client``, ``invalid_grant``, …)
    is final (AuthFailed: reconnect). A failure that passes (5xx, 429, a network error) is
    ``TokenUnavailable``: the request is retried, and the endpoint is not asked again before a
    doubling backoff (1 s to 60 s) — a backlog does not hammer it. Requests that saw the same
    expired token and queue for a refresh share one fetch (``version``)."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, scope: str | None = None) -> None:
        self._url, self._id, self._secret, self._scope = token_url, client_id, client_secret, scope
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.version = 0  # bumped by every fetched token
        self._failures = 0
        self._not_before = 0.0

    async def headers(self, session: aiohttp.ClientSession, body: bytes, msg_id: str) -> dict[str, str]:
        if self._token is None or time.monotonic() >= self._expires_at:
            await self.refresh(session)
        return {"Authorization": f"Bearer {self._token}"}

    async def refresh(self, session: aiohttp.ClientSession, seen: int | None = None) -> bool:
        """Fetch a token, unless one newer than ``seen`` (the version a 401 was answered with) was
        fetched meanwhile or the cached one is still good (``seen`` None: expiry-driven)."""
        async with self._lock:
            if seen is not None and self.version != seen:
                return True  # another request refreshed while this one waited
            if seen is None and self._token is not None and time.monotonic() < self._expires_at:
                return True
            if time.monotonic() < self._not_before:
                raise TokenUnavailable("token endpoint backing off after a failure")
            try:
                doc = await self._fetch(session)
            except TokenUnavailable:
                self._not_before = time.monotonic() + TOKEN_BACKOFF_S[min(self._failures, len(TOKEN_BACKOFF_S) - 1)]
                self._failures += 1
                raise
            self._failures, self._not_before = 0, 0.0
            self._token = str(doc["access_token"])
            self.version += 1
            # Refresh a little early so a token never expires in flight.
            self._expires_at = time.monotonic() + max(1.0, float(doc.get("expires_in", 3600)) * 0.9)
            return True

    async def _fetch(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        form = {"grant_type": "client_credentials", "client_id": self._id, "client_secret": self._secret}
        if self._scope:
            form["scope"] = self._scope
        return await token_request(session, self._url, form, "token endpoint refused the credentials")


async def token_request(session: aiohttp.ClientSession, url: str, form: dict[str, str], refused: str
                        ) -> dict[str, Any]:
    """POST ``form`` to a token endpoint: its answer with an access token; AuthFailed (``refused``:
    the message) when it refuses the credentials or grant (RFC 6749 §5.2); TokenUnavailable for
    anything that passes (unreachable, 5xx, 429, unreadable)."""
    try:
        async with session.post(url, data=form, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TokenUnavailable(f"token endpoint unreachable: {exc}", code=codes.DELIVER_TOKEN_UNAVAILABLE) from None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    error = doc.get("error") if isinstance(doc, dict) else None
    if status == 200 and isinstance(doc, dict) and isinstance(doc.get("access_token"), str) and doc["access_token"]:
        return doc
    if status in (400, 401, 403) and error in REFUSED:
        raise AuthFailed(f"{refused}: {error}", code=codes.DELIVER_AUTH_FAILED)
    raise TokenUnavailable(f"token endpoint answered {status}" + (f" ({error})" if isinstance(error, str) else ""),
                           code=codes.DELIVER_TOKEN_UNAVAILABLE)


class StandardWebhooksSigner(Auth):
    """For destinations that are webhook receivers: webhook-id/-timestamp/-signature headers."""

    def __init__(self, secret: str) -> None:
        self._webhook = Webhook(secret)

    async def headers(self, session: aiohttp.ClientSession, body: bytes, msg_id: str) -> dict[str, str]:
        now = datetime.now(tz=UTC)
        signature = self._webhook.sign(msg_id, now, body.decode())
        return {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}


def build_auth(config: dict[str, str]) -> Auth:
    """An Auth from a resolved ``destination.http.auth`` section."""
    kind = config.get("type", "none")
    if kind == "none":
        return Auth()
    if kind == "bearer":
        return StaticHeader("Authorization", f"Bearer {config['token']}")
    if kind == "api_key":
        return StaticHeader(config.get("header", "Authorization"), config["key"])
    if kind == "basic":
        raw = f"{config['username']}:{config['password']}".encode()
        return StaticHeader("Authorization", "Basic " + base64.b64encode(raw).decode())
    if kind == "oauth2_client_credentials":
        return OAuth2ClientCredentials(config["token_url"], config["client_id"], config["client_secret"],
                                       config.get("scope"))
    if kind == "standard_webhooks":
        return StandardWebhooksSigner(config["secret"])
    raise ValueError(f"unknown auth type {kind!r}")

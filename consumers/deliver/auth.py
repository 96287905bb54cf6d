"""Outgoing credentials: none, API key, bearer, basic, OAuth2 client credentials, Standard Webhooks signing."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime

import aiohttp
from standardwebhooks.webhooks import Webhook

from router.errors import DeliverError


class AuthFailed(DeliverError):
    """Credentials were refused even after a refresh: the integration needs to be reconnected."""

    code = "deliver.auth_failed"


class Auth:
    """Adds credentials to a request; ``refresh`` is called once after a 401."""

    async def headers(self, session: aiohttp.ClientSession, body: bytes, msg_id: str) -> dict[str, str]:
        return {}

    async def refresh(self, session: aiohttp.ClientSession) -> bool:
        """Get new credentials; False when there is nothing to refresh (a 401 is then final)."""
        return False


class StaticHeader(Auth):
    def __init__(self, name: str, value: str) -> None:
        self._name, self._value = name, value

    async def headers(self, session: aiohttp.ClientSession, body: bytes, msg_id: str) -> dict[str, str]:
        return {self._name: self._value}


class OAuth2ClientCredentials(Auth):
    """Token cached until shortly before expiry; one refresh per 401."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, scope: str | None = None) -> None:
        self._url, self._id, self._secret, self._scope = token_url, client_id, client_secret, scope
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def headers(self, session: aiohttp.ClientSession, body: bytes, msg_id: str) -> dict[str, str]:
        if self._token is None or time.monotonic() >= self._expires_at:
            await self.refresh(session)
        return {"Authorization": f"Bearer {self._token}"}

    async def refresh(self, session: aiohttp.ClientSession) -> bool:
        async with self._lock:
            form = {"grant_type": "client_credentials", "client_id": self._id, "client_secret": self._secret}
            if self._scope:
                form["scope"] = self._scope
            try:
                async with session.post(self._url, data=form, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    if resp.status != 200:
                        raise AuthFailed(f"token endpoint answered {resp.status}", code="deliver.auth_failed")
                    doc = await resp.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise AuthFailed(f"token endpoint unreachable: {exc}", code="deliver.auth_unreachable") from None
            self._token = str(doc["access_token"])
            # Refresh a little early so a token never expires in flight.
            self._expires_at = time.monotonic() + max(1.0, float(doc.get("expires_in", 3600)) * 0.9)
            return True


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

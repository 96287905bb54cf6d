"""A connection's OAuth 2.0 authorization-code tokens, refreshed with its refresh token (RFC 6749 §6).

The access token is refreshed shortly before it expires and after a 401 (once per token: requests
refused with the same token share one refresh). The partner may rotate the refresh token; the new
tokens are written back to the connection (``_connections``), so every process — and this one
after a restart — uses them, and the old refresh token is never sent again.

Replicas share connections, and a rotated refresh token works once: two replicas refreshing
together would make the second look like a revoked grant. So a refresh takes a short Redis lock
per connection; a replica that finds it taken waits (the request is retried) until the holder's
write reaches its store, which brings the new tokens with a new route.

Only the token endpoint refusing the grant (``invalid_grant``, ``invalid_client``, …) is final
(AuthFailed: the connection goes needs_reconnect); a failure that passes (5xx, 429, unreachable)
is TokenUnavailable: retried with a doubling backoff (1 s to 60 s), never a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from consumers.deliver.auth import TOKEN_BACKOFF_S, Auth, TokenUnavailable, token_request
from router import redisconn
from router.connections.model import OAuth2AuthorizationCode
from router.settings import Secret

EARLY_S = 60.0  # refresh this long before the access token expires
LOCK_MS = 30_000  # one refresh per connection at a time, across replicas
RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"

Save = Callable[[OAuth2AuthorizationCode], Awaitable[None]]


class OAuth2Refreshing(Auth):
    """Bearer headers from a connection's tokens; refreshes them with the refresh-token grant."""

    def __init__(self, credentials: OAuth2AuthorizationCode, *, token_url: str, client_id: str,
                 client_secret: str, lock: tuple[redisconn.Async, str] | None, save: Save) -> None:
        self.credentials = credentials
        self._url, self._id, self._secret = token_url, client_id, client_secret
        self._lock_client: redisconn.Async | None = lock[0] if lock is not None else None
        self._lock_key = lock[1] if lock is not None else ""
        self._token = ""
        self._save = save
        self._lock = asyncio.Lock()
        self.version = 0
        self._failures = 0
        self._not_before = 0.0

    def _expiring(self) -> bool:
        expires = self.credentials.expires_at_ms
        return expires is not None and time.time() >= expires / 1000 - EARLY_S

    async def headers(self, session: aiohttp.ClientSession, body: bytes, msg_id: str) -> dict[str, str]:
        if self._expiring() and self.credentials.refresh_token is not None:
            await self.refresh(session)
        return {"Authorization": f"{self.credentials.token_type} {self.credentials.access_token.reveal()}"}

    async def refresh(self, session: aiohttp.ClientSession, seen: int | None = None) -> bool:
        """Refresh unless a newer token was fetched since ``seen`` (or, expiry-driven, the token
        is still good); False when there is no refresh token (a 401 is then final)."""
        async with self._lock:
            if seen is not None and self.version != seen:
                return True
            if seen is None and not self._expiring():
                return True
            if self.credentials.refresh_token is None:
                return False
            if time.monotonic() < self._not_before:
                raise TokenUnavailable("token endpoint backing off after a failure")
            if not await self._take_lock():
                raise TokenUnavailable("another worker is refreshing this connection's tokens")
            try:
                doc = await self._fetch(session, self.credentials.refresh_token.reveal())
                self._failures, self._not_before = 0, 0.0
                self.credentials = refreshed(self.credentials, doc, time.time())
                self.version += 1
                await self._save(self.credentials)  # durable before the lock goes: others read it next
            except TokenUnavailable:
                self._not_before = time.monotonic() + TOKEN_BACKOFF_S[min(self._failures, len(TOKEN_BACKOFF_S) - 1)]
                self._failures += 1
                raise
            finally:
                await self._release_lock()
            return True

    async def _take_lock(self) -> bool:
        if self._lock_client is None:
            return True
        try:
            self._token = uuid.uuid4().hex
            return bool(await self._lock_client.set(self._lock_key, self._token, nx=True, px=LOCK_MS))
        except redisconn.UNAVAILABLE as exc:
            raise TokenUnavailable(f"refresh lock unavailable: {exc}") from None

    async def _release_lock(self) -> None:
        """Delete the lock if it is still ours (a refresh slower than LOCK_MS lost it to another)."""
        if self._lock_client is None:
            return
        with contextlib.suppress(*redisconn.UNAVAILABLE):  # it expires by itself (LOCK_MS)
            await self._lock_client.eval(RELEASE, 1, self._lock_key, self._token)

    async def _fetch(self, session: aiohttp.ClientSession, refresh_token: str) -> dict[str, Any]:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": self._id,
                "client_secret": self._secret}
        return await token_request(session, self._url, form, "the token endpoint refused the refresh")


def refreshed(old: OAuth2AuthorizationCode, doc: dict[str, Any], now_s: float) -> OAuth2AuthorizationCode:
    """The credentials after a token answer: the new access token; the new refresh token if the
    partner rotated it (else the old one stays); expiry from ``expires_in`` when given."""
    expires_in = doc.get("expires_in")
    expires_at_ms = (int((now_s + float(expires_in)) * 1000)
                     if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0
                     else None)
    rotated = doc.get("refresh_token")
    scope = doc.get("scope")
    return OAuth2AuthorizationCode(
        access_token=Secret(str(doc["access_token"])),
        refresh_token=Secret(rotated) if isinstance(rotated, str) and rotated else old.refresh_token,
        expires_at_ms=expires_at_ms,
        scopes=tuple(scope.split()) if isinstance(scope, str) and scope else old.scopes,
        token_type="Bearer" if str(doc.get("token_type", "Bearer")).lower() == "bearer" else old.token_type)

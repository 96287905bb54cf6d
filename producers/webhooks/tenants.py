"""Per-tenant signing keys: the URL tenant's connection decides what verifies a request.

With a connection store the gateway verifies each request with the signing secrets of the
connection (tenant, source); a tenant without an *active* connection gets the same 404 as an
unknown source, so a stranger learns nothing about which tenants exist. The cost per request is
two dict lookups whatever the number of tenants: the HMAC keys of a connection are derived
once, cached beside the :class:`Connection` object they came from, and derived again only when
the store holds a new object for that key (the store replaces, never mutates).

Without a connection store (no ``ROUTER_ENCRYPTION_KEY``) the gateway keeps the spec's secrets
(``signature.secrets``), one set for every tenant the spec allows — the behaviour before
connections, kept for existing deployments and tests; docs/connections.md says why to leave it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web

from router import codes
from router.connections.model import Connection, ConnectionsError
from router.connections.store import ConnectionStore
from router.settings import Secret
from router.spec.sources import Scheme, WebhookSource, decode_standard_webhooks_secret

log = logging.getLogger("router.gateway")

START_RETRY_S = 2.0


def signing_keys(scheme: Scheme, secrets: Sequence[Secret]) -> tuple[bytes, ...]:
    """The HMAC keys of a connection's secrets under ``scheme`` (as ``router.spec.sources`` resolves spec secrets).

    A Standard Webhooks secret that is not ``whsec_<base64>`` verifies nothing and is left out.
    """
    if scheme != "standard_webhooks":
        return tuple(s.reveal().encode() for s in secrets)
    keys = []
    for secret in secrets:
        try:
            keys.append(decode_standard_webhooks_secret(secret.reveal()))
        except ValueError:
            continue
    return tuple(keys)


class TenantKeys:
    """Signing keys by (tenant, source), from a live :class:`ConnectionStore`."""

    def __init__(self, store: ConnectionStore) -> None:
        self.store = store
        self._cache: dict[tuple[str, str], tuple[Connection, tuple[bytes, ...]]] = {}

    @property
    def ready(self) -> bool:
        """Has the store read every connection that existed when it started?"""
        return self.store.caught_up

    def keys(self, source: WebhookSource, tenant: str) -> tuple[bytes, ...] | None:
        """The keys that verify ``tenant``'s requests to ``source``; None: no active connection (404)."""
        connection = self.store.get(tenant, source.name)
        if connection is None or not connection.active:
            return None
        cached = self._cache.get((tenant, source.name))
        if cached is not None and cached[0] is connection:
            return cached[1]
        keys = signing_keys(source.scheme, connection.signing_secrets)
        if len(keys) < len(connection.signing_secrets):
            log.warning("connection %s has signing secrets that are not valid for scheme %s; they verify nothing",
                        connection.key, source.scheme,
                        extra={"tenant": tenant, "code": codes.CONNECTIONS_INVALID_SECRET})
        self._cache[(tenant, source.name)] = (connection, keys)
        return keys


def connections_ctx(store: ConnectionStore) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` that starts following ``store`` (retried while the broker does not answer) and stops it."""

    async def start() -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(None, store.start)
                return
            except ConnectionsError as exc:
                log.warning("cannot read connections yet (retrying in %.0fs): %s", START_RETRY_S, exc)
                await asyncio.sleep(START_RETRY_S)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(start())
        await asyncio.wait([task], timeout=10)  # a healthy start is caught up when it says READY
        if task.done() and task.exception() is None:
            await asyncio.get_running_loop().run_in_executor(None, store.wait_caught_up, 10.0)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.get_running_loop().run_in_executor(None, store.stop)

    return ctx

"""Delivery with each tenant's own connection (``destination.http.connection``, docs/connections.md).

A record of such an integration goes out with its tenant's connection: the URL filled from the
connection's settings, its credentials. Records are held per *scope* — ``integration`` for the
others, ``integration/tenant`` here — so one tenant's paused or broken connection holds that
tenant's records only, while the integration's other tenants keep flowing.

- no connection (after the store has read the whole topic) → the record is dead-lettered
  ``deliver.no_connection`` (replayable once the tenant connects): never held for ever;
- a connection that is not ``active`` → its records wait in their lanes (uncommitted in Kafka);
- credentials refused, or a connection its spec cannot use (a credential type it does not
  declare, settings its schema refuses) → the connection goes ``needs_reconnect`` with the
  reason, written to ``_connections`` so every process holds it — unless the connection changed
  after the refused request went out (a person reconnected meanwhile).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from consumers.deliver.auth import Auth, OAuth2ClientCredentials, StaticHeader
from consumers.deliver.config import HttpTarget
from consumers.deliver.oauth_refresh import OAuth2Refreshing
from router import codes, redisconn
from router.connections.model import (
    ApiKey,
    Basic,
    Bearer,
    Connection,
    ConnectionsError,
    Credentials,
    OAuth2AuthorizationCode,
)
from router.connections.model import OAuth2ClientCredentials as ClientCredentials
from router.spec.connection_use import ConnectionUse, render_url

if TYPE_CHECKING:
    from router.connections.store import ConnectionStore, ConnectionWriter

log = logging.getLogger("router.deliver")


def scope_of(integration: str, tenant: str, per_tenant: bool) -> str:
    """The hold scope of a record: its connection (``integration/tenant``) or its integration."""
    return f"{integration}/{tenant}" if per_tenant else integration


@dataclass(frozen=True)
class Route:
    """Where and how one tenant's records of one integration go."""

    url: str
    auth: Auth
    connection: Connection


class Unusable(Exception):
    """A connection its spec cannot deliver with; the message says why (no secret in it)."""


@dataclass(frozen=True)
class Unroutable:
    """An active connection its spec cannot deliver with, and why."""

    reason: str
    connection: Connection


Refresher = Callable[[OAuth2AuthorizationCode], Auth]


def auth_for(use: ConnectionUse, credentials: Credentials | None, refresher: Refresher | None = None) -> Auth:
    """The request credentials of a connection; Unusable for a type the spec does not declare.
    Authorization-code tokens go through ``refresher`` when the spec can refresh them."""
    if credentials is None:
        raise Unusable("the connection holds no credentials")
    if credentials.type not in use.credentials:
        raise Unusable(f"credentials of type {credentials.type}; this integration takes: "
                       f"{', '.join(use.credentials)}")
    if isinstance(credentials, ApiKey):
        return StaticHeader(use.header, credentials.api_key.reveal())
    if isinstance(credentials, Bearer):
        return StaticHeader("Authorization", f"Bearer {credentials.token.reveal()}")
    if isinstance(credentials, Basic):
        raw = f"{credentials.username}:{credentials.password.reveal()}".encode()
        return StaticHeader("Authorization", "Basic " + base64.b64encode(raw).decode())
    if isinstance(credentials, ClientCredentials):
        if not use.token_url:
            raise Unusable("oauth2_client_credentials without a token_url in the spec")
        scope = " ".join(credentials.scopes) or use.scope
        return OAuth2ClientCredentials(use.token_url, credentials.client_id, credentials.client_secret.reveal(), scope)
    if isinstance(credentials, OAuth2AuthorizationCode):
        if refresher is not None and use.refreshes and credentials.refresh_token is not None:
            return refresher(credentials)
        # Nothing to refresh with: the access token as it is; a 401 makes the connection needs_reconnect.
        return StaticHeader("Authorization", f"{credentials.token_type} {credentials.access_token.reveal()}")
    raise Unusable(f"credentials of type {credentials.type} are not supported")


def build_route(target: HttpTarget, connection: Connection, refresher: Refresher | None = None) -> Route:
    """The route of an active connection; Unusable says why there is none."""
    use = target.connection
    assert use is not None
    problem = use.settings_problem(connection.settings)
    if problem is not None:
        raise Unusable(f"its settings do not fit the integration's schema: {problem}")
    try:
        url = render_url(target.url, connection.settings)
    except KeyError as exc:
        raise Unusable(f"its settings lack {exc.args[0]!r}, which the url needs") from None
    except ValueError as exc:
        raise Unusable(str(exc)) from None
    return Route(url, auth_for(use, connection.credentials, refresher), connection)


class Tenancy:
    """The connections of a delivery worker's per-tenant integrations, read from a live
    :class:`ConnectionStore`; routes cached until their connection changes."""

    def __init__(self, store: ConnectionStore, writer: ConnectionWriter | None = None) -> None:
        self.store = store
        self._writer = writer
        self._routes: dict[tuple[str, str], Route | Unroutable] = {}
        self._reported: set[tuple[str, str, int]] = set()
        self._writing: set[tuple[str, str]] = set()  # one write at a time per connection
        self.redis: redisconn.Async | None = None  # the worker's: refresh locks across replicas
        self.prefix = ""

    def close(self) -> None:
        """Stop following the topic; flush the writer."""
        self.store.stop()
        if self._writer is not None:
            self._writer.close()

    def route(self, target: HttpTarget, tenant: str) -> Route | Unroutable | None:
        """The route of ``tenant``'s connection, why it cannot be used, or None (no connection)."""
        connection = self.store.get(tenant, target.integration)
        if connection is None:
            return None
        key = (target.integration, tenant)
        cached = self._routes.get(key)
        if cached is not None and cached.connection is connection:
            return cached
        try:
            found: Route | Unroutable = build_route(target, connection, self._refresher(target, connection))
        except Unusable as exc:
            found = Unroutable(str(exc), connection)
        self._routes[key] = found
        return found

    def _refresher(self, target: HttpTarget, connection: Connection) -> Refresher | None:
        """How ``connection``'s authorization-code tokens are refreshed (and saved back)."""
        use = target.connection
        if use is None or not use.refreshes:
            return None
        tenant, integration = connection.tenant, connection.integration

        async def save(credentials: OAuth2AuthorizationCode) -> None:
            current = self.store.get(tenant, integration)
            if current is None or self._writer is None:
                return
            changed = replace(current, credentials=credentials, updated_at_ms=int(time.time() * 1000))
            try:
                await asyncio.to_thread(self._writer.put, changed)
            except ConnectionsError as exc:  # the tokens work here; other processes refresh for themselves
                log.warning("connection %s/%s: refreshed tokens not saved: %s", tenant, integration, exc)

        lock = (self.redis, f"{self.prefix}oauth:refresh:{tenant}/{integration}") if self.redis is not None else None
        return lambda credentials: OAuth2Refreshing(
            credentials, token_url=use.token_url or "", client_id=use.client_id or "",
            client_secret=use.client_secret or "", lock=lock, save=save)

    def active_scopes(self, targets: dict[str, HttpTarget], active: set[str], pending: set[str]) -> set[str]:
        """Scopes of per-tenant integrations that may send now: connections active and usable (of
        active integrations), and — once the store has read the whole topic — scopes with records
        held (``pending``) whose tenant has no connection, so that their records are dead-lettered."""
        out: set[str] = set()
        for connection in self.store.all():
            target = targets.get(connection.integration)
            if target is None or target.connection is None or not connection.active:
                continue
            if connection.integration in active and isinstance(self.route(target, connection.tenant), Route):
                out.add(scope_of(connection.integration, connection.tenant, True))
        if self.store.caught_up:
            for scope in pending:
                integration, _, tenant = scope.partition("/")
                target = targets.get(integration)
                if tenant and target is not None and self.dead_letter(target, tenant) is not None:
                    out.add(scope)
        return out

    def dead_letter(self, target: HttpTarget, tenant: str) -> tuple[str, str] | None:
        """(code, message) when ``tenant``'s records of ``target`` are dead letters rather than held:
        no connection at all, or disconnected where the spec says ``on_disconnect: dlq``."""
        connection = self.store.get(tenant, target.integration)
        if connection is None:
            return codes.DELIVER_NO_CONNECTION, f"tenant {tenant!r} has no connection to {target.integration}"
        if connection.state == "disconnected" and target.connection is not None and \
                target.connection.on_disconnect == "dlq":
            return codes.DELIVER_DISCONNECTED, f"tenant {tenant!r} disconnected {target.integration}" + (
                f" ({connection.state_reason[:200]})" if connection.state_reason else "")
        return None

    def unusable(self) -> list[tuple[Connection, str]]:
        """Active connections their spec cannot use, each reported once per version of the connection."""
        out = []
        for (integration, tenant), found in list(self._routes.items()):
            if isinstance(found, Unroutable):
                mark = (integration, tenant, found.connection.updated_at_ms)
                if found.connection.active and mark not in self._reported:
                    self._reported.add(mark)
                    out.append((found.connection, found.reason))
        return out

    async def needs_reconnect(self, integration: str, tenant: str, reason: str, sent_ms: int | None) -> bool:
        """Hold (tenant, integration) until a person reconnects it: write ``needs_reconnect`` with
        ``reason`` to the topic. False, and nothing written, when the connection changed after
        ``sent_ms``: the refusal answered a request made with what it held before, so its records
        simply go again. True otherwise — also when the write fails: the records are then held
        here until the next state read, and the next refusal tries the write again."""
        current = self.store.get(tenant, integration)
        if sent_ms is not None and current is not None and current.updated_at_ms > sent_ms:
            return False
        if current is None or not current.active:
            return True
        if self._writer is None:
            log.error("connection %s/%s needs reconnecting, but this worker cannot write connections: %s",
                      tenant, integration, reason)
            return True
        if (tenant, integration) in self._writing:  # refusals of requests in flight together: one write
            return True
        changed = replace(current, state="needs_reconnect", state_reason=reason[:500],
                          updated_at_ms=int(time.time() * 1000))
        self._writing.add((tenant, integration))
        try:
            await asyncio.to_thread(self._writer.put, changed)
        except ConnectionsError as exc:
            log.warning("connection %s/%s: needs_reconnect not written (%s); its records are held here", tenant,
                        integration, exc)
            return True
        finally:
            self._writing.discard((tenant, integration))
        log.error("connection %s/%s needs reconnecting: %s", tenant, integration, reason)
        return True

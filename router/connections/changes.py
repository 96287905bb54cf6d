"""What each ``router connections`` command does to a connection: pure functions, no I/O.

Each takes what is held now (or None) and returns the connection to write, or raises
ConnectionsError with a stable code (``connections.exists``, ``connections.not_found``, ...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from router import codes
from router.connections.model import (
    MAX_SIGNING_SECRETS,
    Connection,
    ConnectionsError,
    Credentials,
    State,
    check_integration,
    check_tenant,
)
from router.settings import Secret

DEFAULT_KEEP = 2  # during a rotation: the new secret and the one before it


def _found(current: Connection | None, tenant: str, integration: str) -> Connection:
    if current is None:
        raise ConnectionsError(f"no connection {tenant}/{integration}; create it with `router connections create`",
                               code=codes.CONNECTIONS_NOT_FOUND)
    return current


def create(current: Connection | None, tenant: str, integration: str, *, now_ms: int, state: State = "active",
           settings: Mapping[str, Any] | None = None, credentials: Credentials | None = None,
           signing_secrets: tuple[Secret, ...] = ()) -> Connection:
    """A new connection; ``connections.exists`` if (tenant, integration) already has one that is not disconnected."""
    check_tenant(tenant)
    check_integration(integration)
    if current is not None and current.state != "disconnected":
        raise ConnectionsError(f"connection {tenant}/{integration} exists ({current.state}); change it with "
                               "`router connections set`", code=codes.CONNECTIONS_EXISTS)
    _check_count(signing_secrets)
    return Connection(tenant, integration, state=state, settings=dict(settings or {}), credentials=credentials,
                      signing_secrets=signing_secrets, created_at_ms=now_ms, updated_at_ms=now_ms)


def update(current: Connection | None, tenant: str, integration: str, *, now_ms: int, state: State | None = None,
           reason: str | None = None, settings: Mapping[str, Any] | None = None,
           unset: tuple[str, ...] = (), credentials: Credentials | None = None,
           signing_secrets: tuple[Secret, ...] | None = None) -> Connection:
    """``current`` with the given parts changed; ``settings`` are merged key by key, ``unset`` keys removed."""
    found = _found(current, tenant, integration)
    merged = {**found.settings, **(settings or {})}
    for key in unset:
        merged.pop(key, None)
    if signing_secrets is not None:
        _check_count(signing_secrets)
    new_state = state or found.state
    return dataclasses.replace(
        found, state=new_state,
        state_reason=reason if reason is not None else ("" if new_state == "active" else found.state_reason),
        settings=merged, credentials=credentials or found.credentials,
        signing_secrets=found.signing_secrets if signing_secrets is None else signing_secrets, updated_at_ms=now_ms)


def rotate_secret(current: Connection | None, tenant: str, integration: str, new: Secret, *, now_ms: int,
                  keep: int = DEFAULT_KEEP) -> Connection:
    """Put ``new`` first and keep the newest ``keep`` secrets (all of them are accepted until the next change)."""
    found = _found(current, tenant, integration)
    if keep < 1 or keep > MAX_SIGNING_SECRETS:
        raise ConnectionsError(f"--keep must be 1 to {MAX_SIGNING_SECRETS}", code=codes.CONNECTIONS_INVALID_SECRET)
    if any(s == new for s in found.signing_secrets):
        raise ConnectionsError("that signing secret is already one of this connection's",
                               code=codes.CONNECTIONS_INVALID_SECRET)
    return dataclasses.replace(found, signing_secrets=(new, *found.signing_secrets)[:keep], updated_at_ms=now_ms)


def finish_rotation(current: Connection | None, tenant: str, integration: str, *, now_ms: int) -> Connection:
    """Keep only the newest signing secret: the partner has switched."""
    found = _found(current, tenant, integration)
    if not found.signing_secrets:
        raise ConnectionsError(f"connection {tenant}/{integration} has no signing secret",
                               code=codes.CONNECTIONS_INVALID_SECRET)
    return dataclasses.replace(found, signing_secrets=found.signing_secrets[:1], updated_at_ms=now_ms)


def disconnect(current: Connection | None, tenant: str, integration: str, *, now_ms: int,
               reason: str = "") -> Connection:
    """State ``disconnected``, credentials and signing secrets deleted; settings kept for a reconnect.

    The callers (`router connections disconnect`, the admin page) then revoke the tokens at the
    partner and purge the tenant's Redis state (router/connections/partner.py).
    """
    found = _found(current, tenant, integration)
    return dataclasses.replace(found, state="disconnected", state_reason=reason, credentials=None,
                               signing_secrets=(), updated_at_ms=now_ms)


def needs_reencryption(connection: Connection, current_kid: str) -> bool:
    """Does ``connection`` hold secrets sealed under a key other than the current one?"""
    has_secrets = connection.credentials is not None or bool(connection.signing_secrets)
    return has_secrets and connection.key_id != current_kid


def _check_count(secrets: tuple[Secret, ...]) -> None:
    if len(secrets) > MAX_SIGNING_SECRETS:
        raise ConnectionsError(f"at most {MAX_SIGNING_SECRETS} signing secrets", code=codes.CONNECTIONS_INVALID_SECRET)

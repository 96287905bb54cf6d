"""What the connect and disconnect steps need from an integration's spec and from Redis, shared by
`router connections` and the admin page: our OAuth client at the partner (the spec's ``env:`` /
``file:`` references resolved, never printed) and the purge of a tenant's Redis state as one line.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

from router import codes, redisconn
from router.connections.model import ConnectionsError
from router.connections.purge import affected, purge
from router.spec.connection_use import ConnectionUse, parse_use
from router.spec.model import Integration

MAX_REF_BYTES = 64 * 1024


def resolve_ref(value: str | None, what: str) -> str | None:
    """A spec value that may be an ``env:VAR`` or ``file:PATH`` reference, resolved; other values as given.

    ConnectionsError ``connections.missing_secret`` names the reference, never a value."""
    if not value or not value.startswith(("env:", "file:")):
        return value
    kind, _, target = value.partition(":")
    if kind == "env":
        text = os.environ.get(target, "")
    else:
        try:
            with Path(target).open(encoding="utf-8") as f:
                text = f.read(MAX_REF_BYTES + 1)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConnectionsError(f"{what}: cannot read {target}: {getattr(exc, 'strerror', None) or exc}",
                                   code=codes.CONNECTIONS_MISSING_SECRET) from None
    if not text.strip() or len(text) > MAX_REF_BYTES:
        raise ConnectionsError(f"{what}: {value} is not set, empty or larger than {MAX_REF_BYTES} bytes",
                               code=codes.CONNECTIONS_MISSING_SECRET)
    return text.strip()


def connection_use(integration: Integration) -> ConnectionUse | None:
    """The ``destination.http.connection`` section of ``integration``, our OAuth client resolved (None: none)."""
    section = (integration.destination.http or {}).get("connection")
    if section is None:
        return None
    use = parse_use(section)
    return dataclasses.replace(use, client_id=resolve_ref(use.client_id, "connection.client_id"),
                               client_secret=resolve_ref(use.client_secret, "connection.client_secret"))


def purge_line(client: redisconn.Sync, prefix: str, tenant: str, integrations: Iterable[Integration],
               integration: str) -> str:
    """Purge (router.connections.purge) what Redis holds of ``tenant`` for ``integration``; one line saying so."""
    about = affected(integrations, integration)
    if not about:
        return f"Redis state: no loaded integration is about {integration}; nothing to purge"
    removed = purge(client, prefix, tenant, about)
    return f"purged {removed} Redis key(s) of {tenant} for {', '.join(i.name for i in about)}"

"""Redis key names that more than one process kind needs (the layout is in docs/redis.md)."""

from __future__ import annotations

from router import redisconn


def scope_key(prefix: str, destination: str, tenant: str | None, clustered: bool = False) -> str:
    """The stem of a rate-limit scope's keys (``…:tat``, ``…:adapt``, ``…:hold``): a destination's
    (``tenant`` None) or one tenant's share of it. Written by delivery workers; purged with a
    tenant's connection (router.connections.purge)."""
    names = (destination,) if tenant is None else (destination, tenant)
    return f"{prefix}{redisconn.slot_tag(clustered, *names)}rl:{':'.join(names)}"

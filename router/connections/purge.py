"""What disconnecting a tenant from an integration removes from Redis, so that a reconnect starts clean.

For each integration the connection is about (the integration itself, or every integration that
reads a webhook source of that name):

- the route worker's dedupe claims ``P dk:<tenant>:<source>:<event id>|<integration>`` and
  watermarks ``P wm:<tenant>:<integration>:<entity>`` (found with SCAN, on every master of a
  cluster, where they carry a ``{r<bucket>}`` tag after the prefix);
- the tenant's health row ``P health:<integration>:<tenant>``;
- the tenant's rate-limit cells ``P rl:<destination>:<tenant>:tat|adapt|hold`` (kept per tenant
  when the spec says ``rate_limit.scope: tenant``).

Delivered keys (``P delivered:<destination>:<sha256>``) stay until their TTL: they are one-way
digests that hold nothing of the tenant, and they keep a partner from receiving an event twice if
the same events are routed again after a reconnect.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from router import redisconn
from router.health import row_key
from router.keys import scope_key
from router.spec.model import Integration

SCAN_COUNT = 1000
DELETE_CHUNK = 500
_GLOB = re.compile(r"([*?\[\]\\])")


def _literal(text: str) -> str:
    """``text`` as a SCAN MATCH pattern that matches only itself."""
    return _GLOB.sub(r"\\\1", text)


def affected(integrations: Iterable[Integration], name: str) -> list[Integration]:
    """The integrations a connection named ``name`` is about: that integration, or those reading
    the webhook source ``name``."""
    return [i for i in integrations if name in (i.name, i.source.name)]


def patterns(prefix: str, tenant: str, integration: Integration, clustered: bool) -> list[str]:
    """SCAN MATCH patterns of the route worker's keys for (tenant, integration)."""
    head = _literal(prefix) + (r"\{r*\}" if clustered else "")
    source = _literal(integration.source.name)
    return [f"{head}dk:{_literal(tenant)}:{source}:*|{_literal(integration.name)}",
            f"{head}wm:{_literal(tenant)}:{_literal(integration.name)}:*"]


def exact_keys(prefix: str, tenant: str, integration: Integration, clustered: bool) -> list[str]:
    """Keys of (tenant, integration) whose names are known: its health row, its rate-limit cells."""
    stem = scope_key(prefix, integration.destination.name, tenant, clustered)
    return [row_key(prefix, integration.name, tenant), f"{stem}:tat", f"{stem}:adapt", f"{stem}:hold"]


def _chunks(keys: Iterator[bytes | str], size: int) -> Iterator[list[bytes | str]]:
    chunk: list[bytes | str] = []
    for key in keys:
        chunk.append(key)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def purge(client: redisconn.Sync, prefix: str, tenant: str, integrations: Iterable[Integration]) -> int:
    """Delete (tenant, integration)'s keys for each of ``integrations``; return how many existed."""
    clustered = redisconn.clustered(client)
    removed = 0
    for integration in integrations:
        for pattern in patterns(prefix, tenant, integration, clustered):
            for chunk in _chunks(client.scan_iter(match=pattern, count=SCAN_COUNT), DELETE_CHUNK):
                removed += int(client.unlink(*chunk))
        removed += int(client.unlink(*exact_keys(prefix, tenant, integration, clustered)))
    return removed

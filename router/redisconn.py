"""One way to reach Redis, standalone or Cluster, chosen by the URL (docs/redis.md).

``redis://`` and ``rediss://`` name one Redis; ``redis+cluster://`` and ``rediss+cluster://`` name
any node of a Redis Cluster, and the client discovers the rest and follows MOVED and ASK while
slots migrate. Every process kind builds its clients here, so the choice is made once.

Code that touches several keys in one call keeps them in one hash slot (a tag from
:func:`slot_tag`, or the route worker's ``claim_for`` tags) or groups them by slot with
:func:`by_slot`; :func:`mget` reads keys of any slots. A cluster has one database: a ``/N`` path
in the URL is ignored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, TypeAlias

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
from redis.cluster import RedisCluster, key_slot
from redis.exceptions import RedisClusterException

from router.errors import ConfigError

Sync: TypeAlias = "redis.Redis | RedisCluster"
Async: TypeAlias = "aioredis.Redis | aiocluster.RedisCluster"

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def is_cluster(url: str) -> bool:
    """True when ``url`` names a Redis Cluster (``redis+cluster://`` or ``rediss+cluster://``)."""
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def plain_url(url: str) -> str:
    """``url`` with a cluster scheme turned into the plain one the client library reads."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"REDIS_URL must look like redis://host:port/0 or redis+cluster://host:port, got {scheme!r}")
    return f"{CLUSTER_SCHEMES.get(scheme.lower(), scheme)}://{rest}"


def connect(url: str, **kwargs: Any) -> Sync:
    """A blocking client for ``url`` (standalone or cluster; see the module docstring)."""
    if is_cluster(url):
        return RedisCluster.from_url(plain_url(url), **kwargs)
    return redis.Redis.from_url(url, **kwargs)


def connect_async(url: str, **kwargs: Any) -> Async:
    """An asyncio client for ``url`` (standalone or cluster)."""
    if is_cluster(url):
        return aiocluster.RedisCluster.from_url(plain_url(url), **kwargs)
    return aioredis.Redis.from_url(url, **kwargs)


def clustered(client: Sync | Async) -> bool:
    return isinstance(client, RedisCluster | aiocluster.RedisCluster)


def slot_of(key: str | bytes) -> int:
    """The hash slot of ``key`` (honours ``{tag}``), as a cluster computes it."""
    return int(key_slot(key.encode() if isinstance(key, str) else key))


def by_slot(keys: Sequence[str], clustered: bool) -> list[list[int]]:
    """Indexes of ``keys`` grouped by hash slot, in first-seen order; one group when not clustered."""
    if not clustered:
        return [list(range(len(keys)))] if keys else []
    groups: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(slot_of(key), []).append(i)
    return list(groups.values())


def mget(client: Sync, keys: Sequence[str]) -> list[Any]:
    """MGET of keys that may live in different slots (the cluster client splits it per slot)."""
    if not keys:
        return []
    if isinstance(client, RedisCluster):
        return list(client.mget_nonatomic(keys))
    return list(client.mget(keys))


async def mget_async(client: Async, keys: Sequence[str]) -> list[Any]:
    """:func:`mget` for an asyncio client."""
    if not keys:
        return []
    if isinstance(client, aiocluster.RedisCluster):
        return list(await client.mget_nonatomic(keys))
    return list(await client.mget(keys))


# What a Redis call may raise on either client: the cluster client raises RedisClusterException,
# which is not a RedisError, when no node answers at start-up or a slot has no node. UNAVAILABLE
# adds the socket errors a call may let through.
ERRORS = (redis.RedisError, RedisClusterException)
UNAVAILABLE = (redis.RedisError, RedisClusterException, OSError)


def slot_tag(clustered: bool, *names: str) -> str:
    """``{<16 hex digits>}`` naming ``names`` on a cluster, ``""`` on a standalone Redis.

    Keys that one script or one RENAME touches together carry the same tag, placed right after the
    key prefix, before any name that comes from outside (a tenant, a destination, an audience), so
    a name holding ``{`` or ``}`` cannot move the tag: the slot is that of a digest of the names,
    never of a piece of a name. Standalone keys carry no tag, so their layout is what it always
    was (docs/redis.md).
    """
    if not clustered:
        return ""
    digest = hashlib.blake2b(json.dumps(names).encode(), digest_size=8).hexdigest()
    return f"{{{digest}}}"

"""Rate limits shared by every delivery replica: GCRA in Redis, adapting down on 429, and holds.

One key per destination (or destination + tenant). ``acquire`` answers "go now" (0) or "wait N ms";
the theoretical arrival time only advances when a request is allowed, so waiting callers do not
consume capacity. A 429 halves the destination's effective rate (``penalize``) once per window
(simultaneous 429s are one signal, not several); every clean window at the reduced rate raises it
by a quarter until it is back at the configured rate.

A **hold** (``hold``) is the partner saying "not before T" (Retry-After, or a 503): every request
to the destination — every tenant's, or one tenant's where limits are per tenant — waits until T,
on every replica. ``acquire`` honours it atomically; workers also read holds with their state
refresh (``holds``), so destinations without a rate limit are held too.

Keys (``P`` the key prefix, ``S`` the scope: ``destination`` or ``destination:tenant``)::

    P rl:S:tat     the theoretical arrival time (GCRA)
    P rl:S:adapt   the 429 factor
    P rl:S:hold    the hold in force

On a Redis Cluster the three keys of a scope carry one hash tag right after the prefix, a digest
of the scope's names (``P{…}rl:S:tat``), so that ``ACQUIRE`` touches one slot; on a standalone
Redis there is no tag (docs/redis.md).
"""

from __future__ import annotations

from consumers.deliver.config import RateLimit
from router import redisconn
from router.keys import scope_key

# KEYS: tat key, factor key, hold key. ARGV: interval ms, burst, recover-after ms.
ACQUIRE = """
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hold = tonumber(redis.call("GET", KEYS[3]) or "0") or 0
if hold > now then
  return math.ceil(hold - now)
end
local f = redis.call("HMGET", KEYS[2], "factor", "changed")
local factor = tonumber(f[1]) or 1.0
local changed = tonumber(f[2]) or now
if factor < 1.0 and now - changed >= tonumber(ARGV[3]) then
  factor = math.min(1.0, factor * 1.25)
  redis.call("HSET", KEYS[2], "factor", tostring(factor), "changed", tostring(now))
  redis.call("PEXPIRE", KEYS[2], 3600000)
end
local interval = tonumber(ARGV[1]) / factor
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call("GET", KEYS[1])) or now
if tat < now then tat = now end
local allow_at = tat - tolerance
if allow_at > now then
  return math.ceil(allow_at - now)
end
local new_tat = tat + interval
redis.call("SET", KEYS[1], tostring(new_tat), "PX", math.ceil(new_tat - now + tolerance) + 1000)
return 0
"""

# KEYS: factor key. ARGV: window ms (one cut per window).
PENALIZE = """
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local f = redis.call("HMGET", KEYS[1], "factor", "cut")
local factor = tonumber(f[1]) or 1.0
if now - (tonumber(f[2]) or 0) < tonumber(ARGV[1]) then
  return tostring(factor)
end
redis.call("HSET", KEYS[1], "cut", tostring(now))
factor = math.max(0.05, factor * 0.5)
redis.call("HSET", KEYS[1], "factor", tostring(factor), "changed", tostring(now))
redis.call("PEXPIRE", KEYS[1], 3600000)
return tostring(factor)
"""


# KEYS: hold key. ARGV: hold until (epoch ms). Keeps the later of the two.
HOLD = """
local until = tonumber(ARGV[1])
local cur = tonumber(redis.call("GET", KEYS[1]) or "0") or 0
if until > cur then
  local t = redis.call("TIME")
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call("SET", KEYS[1], tostring(until), "PX", math.max(1, until - now))
  return until
end
return cur
"""


def hold_key(prefix: str, destination: str, tenant: str | None, clustered: bool = False) -> str:
    """The hold of a destination (``tenant`` None) or of one tenant's share of it."""
    return f"{scope_key(prefix, destination, tenant, clustered)}:hold"


class SharedRateLimiter:
    """GCRA limiter keyed by destination (and tenant when the spec says ``scope: tenant``)."""

    def __init__(self, client: redisconn.Async, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._clustered = redisconn.clustered(client)
        self._acquire = client.register_script(ACQUIRE)
        self._penalize = client.register_script(PENALIZE)
        self._hold = client.register_script(HOLD)

    def _adapt_key(self, destination: str, tenant: str, limit: RateLimit) -> str:
        return f"{self._scope(destination, tenant, limit)}:adapt"

    def _scope(self, destination: str, tenant: str, limit: RateLimit) -> str:
        return scope_key(self._prefix, destination, tenant if limit.scope == "tenant" else None, self._clustered)

    def hold_key(self, destination: str, tenant: str | None) -> str:
        """:func:`hold_key` with this limiter's prefix, tagged when its client is a cluster's."""
        return hold_key(self._prefix, destination, tenant, self._clustered)

    async def wait_ms(self, destination: str, tenant: str, limit: RateLimit) -> int:
        """0 when a request may go now (and it is counted); else how long to wait before asking again."""
        scope = self._scope(destination, tenant, limit)  # one slot for the three keys on a cluster
        recover_ms = max(1000, int(limit.per_s * 1000) * 5)
        return int(await self._acquire(keys=[f"{scope}:tat", f"{scope}:adapt", f"{scope}:hold"],
                                       args=[limit.interval_ms, limit.burst, recover_ms]))

    async def penalize(self, destination: str, tenant: str, limit: RateLimit) -> float:
        """A 429 was answered: halve the effective rate (not below 5%), once per window of
        ``max(1 s, per)``: the 429s of requests that were in flight together count once."""
        adapt = self._adapt_key(destination, tenant, limit)
        window_ms = max(1000, int(limit.per_s * 1000))
        return float(await self._penalize(keys=[adapt], args=[window_ms]))

    async def hold(self, key: str, until_ms: int) -> int:
        """Hold every request of ``key`` (``hold_key``) until ``until_ms``; returns the hold in force."""
        return int(await self._hold(keys=[key], args=[until_ms]))

    async def holds(self, keys: list[str]) -> list[int]:
        """The holds in force for ``keys`` (0: none), in one round trip (one per node on a cluster)."""
        raw = await redisconn.mget_async(self._client, keys)
        return [int(float(v)) if v else 0 for v in raw]

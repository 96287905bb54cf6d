"""Rate limits shared by every delivery replica: GCRA in Redis, adapting down on 429.

One key per destination (or destination + tenant). ``acquire`` answers "go now" (0) or "wait N ms";
the theoretical arrival time only advances when a request is allowed, so waiting callers do not
consume capacity. A 429 halves the destination's effective rate (``penalize``); every clean
window at the reduced rate raises it by a quarter until it is back at the configured rate.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from consumers.deliver.config import RateLimit

# KEYS: tat key, factor key. ARGV: interval ms, burst, recover-after ms.
ACQUIRE = """
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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

PENALIZE = """
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local factor = tonumber(redis.call("HGET", KEYS[1], "factor")) or 1.0
factor = math.max(0.05, factor * 0.5)
redis.call("HSET", KEYS[1], "factor", tostring(factor), "changed", tostring(now))
redis.call("PEXPIRE", KEYS[1], 3600000)
return tostring(factor)
"""


class SharedRateLimiter:
    """GCRA limiter keyed by destination (and tenant when the spec says ``scope: tenant``)."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._acquire = client.register_script(ACQUIRE)
        self._penalize = client.register_script(PENALIZE)

    def _keys(self, destination: str, tenant: str, limit: RateLimit) -> tuple[str, str]:
        scope = f"{destination}:{tenant}" if limit.scope == "tenant" else destination
        return f"{self._prefix}rl:{scope}:tat", f"{self._prefix}rl:{scope}:adapt"

    async def wait_ms(self, destination: str, tenant: str, limit: RateLimit) -> int:
        """0 when a request may go now (and it is counted); else how long to wait before asking again."""
        tat, adapt = self._keys(destination, tenant, limit)
        recover_ms = max(1000, int(limit.per_s * 1000) * 5)
        return int(await self._acquire(keys=[tat, adapt], args=[limit.interval_ms, limit.burst, recover_ms]))

    async def penalize(self, destination: str, tenant: str, limit: RateLimit) -> float:
        """A 429 was answered: halve the effective rate (not below 5%); returns the new factor."""
        _, adapt = self._keys(destination, tenant, limit)
        return float(await self._penalize(keys=[adapt]))

    async def factor(self, destination: str, tenant: str, limit: RateLimit) -> float:
        _, adapt = self._keys(destination, tenant, limit)
        value = await self._client.hget(adapt, "factor")
        return float(value) if value else 1.0

"""Integration state shared by every process through Redis: active, paused, needs_reconnect.

Delivery workers read it (every second) to hold an integration's records; `router integrations
pause|resume` and the admin page write it. Held records stay uncommitted in Kafka: nothing is lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import orjson

from router import redisconn

State = Literal["active", "paused", "needs_reconnect"]
STATES: tuple[State, ...] = ("active", "paused", "needs_reconnect")


@dataclass(frozen=True)
class IntegrationState:
    name: str
    state: State
    reason: str = ""
    since_ms: int = 0


def _key(prefix: str, name: str) -> str:
    return f"{prefix}integration:{name}:state"


# A delivery worker's hold is set only if nobody changed the state since its request went out: a
# 403 answered to a request sent before a person reconnected must not undo the reconnect.
# KEYS[1] the state key; ARGV[1] the new state document; ARGV[2] when the request went out (ms).
HOLD_UNLESS_CHANGED = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, doc = pcall(cjson.decode, cur)
  local since = ok and type(doc) == 'table' and tonumber(doc['since_ms'])
  if since and since > tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


def set_state(client: redisconn.Sync, prefix: str, name: str, state: State, reason: str = "") -> IntegrationState:
    """Write an integration's state, with the time it changed (``active`` too: a delivery worker's
    late answer to a request sent before the change must not override it, see :data:`HOLD_UNLESS_CHANGED`)."""
    now = int(time.time() * 1000)
    client.set(_key(prefix, name), orjson.dumps({"state": state, "reason": reason, "since_ms": now}))
    return IntegrationState(name, state, reason, now)


def read_states(client: redisconn.Sync, prefix: str, names: Iterable[str]) -> dict[str, IntegrationState]:
    """Every named integration's state in one round trip (one per node on a cluster: the keys are
    spread over slots on purpose, each integration's state is one key)."""
    names = list(names)
    if not names:
        return {}
    raw = redisconn.mget(client, [_key(prefix, n) for n in names])
    return {n: parse(n, v) for n, v in zip(names, raw, strict=True)}


def parse(name: str, value: bytes | str | None) -> IntegrationState:
    """Decode one stored state; anything unreadable counts as active (and is logged by callers)."""
    if not value:
        return IntegrationState(name, "active")
    try:
        doc = orjson.loads(value)
        state = doc.get("state", "active")
        return IntegrationState(name, state if state in STATES else "active", str(doc.get("reason", "")),
                                int(doc.get("since_ms", 0)))
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return IntegrationState(name, "active")


def state_key(prefix: str, name: str) -> str:
    """The Redis key holding ``name``'s state (for async clients)."""
    return _key(prefix, name)

"""Dedupe and ordering decisions in Redis: one Lua call per batch (semantics: router.pipeline.state).

The script is the Redis twin of ``MemoryState``; tests/integration/test_state_parity.py runs both
on the same claims and requires the same answers. It touches keys it is not given in KEYS, so it
needs a single Redis (or Redis Cluster with hash-tagged keys — not done yet).
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import redis

from router import deadletters
from router.deadletters import Slot
from router.pipeline.records import Claim, Decision

# ARGV[1] is the batch as one JSON array (cheap to build with orjson, no per-argument packing);
# per claim: [dedupe key or "", coords, dedupe ttl ms, order key or "", version or "", order ttl ms].
# The answer is one string, a decision letter per claim.
# A held claim is a string key "<decision>|<previous watermark version or empty>|<coords>";
# a watermark is "<version>|<coords of the record that set it>". Coords never contain "|".
# Four commands per new record (GET, GET, SET PX, SET PX), two per duplicate. A value that cannot
# be read (wrong type or format, e.g. left by an older layout) is treated as absent: it must never
# stall the pipeline, and SET replaces it.
DECIDE = """
local claims = cjson.decode(ARGV[1])
local out = {}
for j = 1, #claims do
  local c = claims[j]
  local dk, coords, dttl, ok, ver, ottl = c[1], c[2], c[3], c[4], c[5], c[6]
  local decision = false
  if dk ~= "" then
    local cur = redis.pcall("GET", dk)
    if type(cur) == "string" then
      local d, _, held = string.match(cur, "^([rds])|([^|]*)|(.*)$")
      if d then
        if held == coords then decision = d else decision = "d" end
      end
    end
  end
  if not decision then
    decision = "r"
    local previous = ""
    if ok ~= "" then
      local mark = redis.pcall("GET", ok)
      local mv, mc = nil, nil
      if type(mark) == "string" then mv, mc = string.match(mark, "^([^|]*)|(.*)$") end
      mv = tonumber(mv)
      if mv and mc == coords then
        decision = "r"
      elseif mv and tonumber(ver) <= mv then
        decision = "s"
      else
        if mv then previous = tostring(mv) end
        redis.call("SET", ok, ver .. "|" .. coords, "PX", ottl)
      end
    end
    if dk ~= "" then
      redis.call("SET", dk, decision .. "|" .. previous .. "|" .. coords, "PX", dttl)
    end
  end
  out[j] = decision
end
return table.concat(out)
"""

# Per claim, 3 ARGV slots: dedupe key, coords, order key ("" = none).
RELEASE = """
local n = tonumber(ARGV[1])
local released = 0
for j = 0, n - 1 do
  local dk, coords, ok = ARGV[2 + j * 3], ARGV[3 + j * 3], ARGV[4 + j * 3]
  local cur = redis.pcall("GET", dk)
  if type(cur) == "string" then
    local d, previous, c = string.match(cur, "^([rds])|([^|]*)|(.*)$")
    if d and c == coords then
      redis.call("DEL", dk)
      released = released + 1
      if d == "r" and ok ~= "" then
        local mark = redis.pcall("GET", ok)
        if type(mark) == "string" and string.match(mark, "^[^|]*|(.*)$") == coords then
          if previous == "" then
            redis.call("DEL", ok)
          else
            redis.call("SET", ok, previous .. "|", "KEEPTTL")
          end
        end
      end
    end
  end
end
return released
"""

_CHUNK = 2000  # claims per script call: bounds the time Redis spends in one script
_DECISIONS = {d.value: d for d in Decision}


class RedisState:
    """StateStore backed by Redis; raises redis.RedisError when Redis is unavailable."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._decide = client.register_script(DECIDE)
        self._release = client.register_script(RELEASE)

    def decide(self, claims: Sequence[Claim]) -> list[Decision]:
        out: list[Decision] = []
        for start in range(0, len(claims), _CHUNK):
            chunk = claims[start:start + _CHUNK]
            blob = orjson.dumps([
                (_slot(c), c.coords, max(1, c.dedupe_ttl_ms), c.order_key or "",
                 repr(c.version) if c.version is not None else "", max(1, c.order_ttl_ms))
                for c in chunk
            ])
            answer = self._decide(args=[blob])
            out.extend(_DECISIONS[letter] for letter in (answer.decode() if isinstance(answer, bytes) else answer))
        return out

    def release(self, claims: Sequence[Claim]) -> None:
        held = [c for c in claims if c.dedupe_key]
        for start in range(0, len(held), _CHUNK):
            chunk = held[start:start + _CHUNK]
            argv: list[str | int] = [len(chunk)]
            for c in chunk:
                argv += [_slot(c), c.coords, c.order_key or ""]
            self._release(args=argv)

    def dead_lettered(self, slots: Sequence[Slot]) -> list[bool]:
        return deadletters.written(self._client, slots)

    def record_dead_letters(self, slots: Sequence[Slot], codes: Sequence[str]) -> None:
        deadletters.record(self._client, slots, codes)


def _slot(claim: Claim) -> str:
    """The Redis key of a claim: dedupe is per (tenant, source, event id) and integration."""
    return f"{claim.dedupe_key}|{claim.field}" if claim.dedupe_key else ""

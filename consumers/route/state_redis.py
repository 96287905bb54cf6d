"""Dedupe and ordering decisions in Redis: one Lua call per batch (semantics: router.pipeline.state).

The script is the Redis twin of ``MemoryState``; tests/integration/test_state_parity.py runs both
on the same claims and requires the same answers.

On Redis Cluster (docs/redis.md) a claim's two keys share one hash tag (``claim_for``), claims are
grouped by the node that owns their slot, and each node gets one script call per chunk, which
touches only keys that node serves (Redis 7 lets a script reach undeclared keys of its own node;
the ``allow-cross-slot-keys`` flag lets one call span that node's slots). While slots migrate, a
call can meet a key its node no longer serves: it fails, the client's slot map is refreshed, and
the worker decides the batch again — the script is idempotent per claim (a held claim answers
with its first decision), so a half-run call changes no answer.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import NoScriptError, ResponseError

from router import deadletters, redisconn
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
DECIDE = """#!lua flags=allow-cross-slot-keys
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
RELEASE = """#!lua flags=allow-cross-slot-keys
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

log = logging.getLogger("router.route")
_CHUNK = 2000  # claims per script call: bounds the time Redis spends in one script
_DECISIONS = {d.value: d for d in Decision}


class RedisState:
    """StateStore backed by Redis or Redis Cluster; raises redis.RedisError when it is unavailable."""

    def __init__(self, client: redisconn.Sync) -> None:
        self._client = client
        self._cluster = client if isinstance(client, RedisCluster) else None
        self._decide = _Script(client, DECIDE)
        self._release = _Script(client, RELEASE)

    def decide(self, claims: Sequence[Claim]) -> list[Decision]:
        return _while_slots_move(lambda: self._decide_all(claims))

    def release(self, claims: Sequence[Claim]) -> None:
        _while_slots_move(lambda: self._release_all(claims))

    def _decide_all(self, claims: Sequence[Claim]) -> list[Decision]:
        out: list[Decision | None] = [None] * len(claims)
        for node, indexes in self._by_node(claims):
            for start in range(0, len(indexes), _CHUNK):
                chunk = indexes[start:start + _CHUNK]
                blob = orjson.dumps([
                    (_slot(c), c.coords, max(1, c.dedupe_ttl_ms), c.order_key or "",
                     repr(c.version) if c.version is not None else "", max(1, c.order_ttl_ms))
                    for c in (claims[i] for i in chunk)
                ])
                answer = self._decide(node, [blob])
                letters = answer.decode() if isinstance(answer, bytes) else answer
                for i, letter in zip(chunk, letters, strict=True):
                    out[i] = _DECISIONS[letter]
        return out  # type: ignore[return-value]  # every index is in exactly one group

    def _release_all(self, claims: Sequence[Claim]) -> None:
        held = [c for c in claims if c.dedupe_key]
        for node, indexes in self._by_node(held):
            for start in range(0, len(indexes), _CHUNK):
                chunk = indexes[start:start + _CHUNK]
                argv: list[str | int] = [len(chunk)]
                for i in chunk:
                    c = held[i]
                    argv += [_slot(c), c.coords, c.order_key or ""]
                self._release(node, argv)

    def _by_node(self, claims: Sequence[Claim]) -> list[tuple[ClusterNode | None, list[int]]]:
        """Claim indexes by the cluster node serving their keys (one group when standalone)."""
        if not claims:
            return []
        if self._cluster is None:
            return [(None, list(range(len(claims))))]
        nodes = self._cluster.nodes_manager
        groups: dict[str, tuple[ClusterNode, list[int]]] = {}
        for i, c in enumerate(claims):
            node = nodes.get_node_from_slot(redisconn.slot_of(c.order_key or c.dedupe_key or ""))
            groups.setdefault(node.name, (node, []))[1].append(i)
        return list(groups.values())

    def dead_lettered(self, slots: Sequence[Slot]) -> list[bool]:
        return deadletters.written(self._client, slots)

    def record_dead_letters(self, slots: Sequence[Slot], codes: Sequence[str]) -> None:
        deadletters.record(self._client, slots, codes)


class SlotMoved(ResponseError):
    """A script met a key its node no longer serves: the slot is migrating or has moved."""


T = TypeVar("T")
MOVE_RETRY_S = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)  # about 3 s: a slot migrates in milliseconds


def _while_slots_move(call: Callable[[], T]) -> T:
    """Run ``call`` again, shortly, while slots it touches are migrating (resharding): the scripts are
    idempotent per claim, so a call that half ran and is run again gives the same answers. After
    about 3 s the error goes to the worker, which retries the batch with its own backoff."""
    for pause in MOVE_RETRY_S:
        try:
            return call()
        except SlotMoved as exc:
            log.info("a slot moved under a decision; deciding again in %.2fs: %s", pause, exc)
            time.sleep(pause)
    return call()


class _Script:
    """A Lua script run by its SHA (loaded again after a restart or failover forgets it), on one
    chosen cluster node or on the standalone Redis."""

    def __init__(self, client: redisconn.Sync, body: str) -> None:
        self._client = client
        self._body = body
        self._sha = hashlib.sha1(body.encode()).hexdigest()  # noqa: S324 (Redis names scripts by SHA-1)

    def __call__(self, node: ClusterNode | None, args: Sequence[str | int | bytes]) -> Any:
        target = {} if node is None else {"target_nodes": node}
        try:
            return self._client.execute_command("EVALSHA", self._sha, 0, *args, **target)
        except NoScriptError:
            return self._client.execute_command("EVAL", self._body, 0, *args, **target)
        except ResponseError as exc:
            if node is not None and "non local key" in str(exc):
                # Slots moved (resharding or failover): refresh the map; the caller runs it again.
                self._client.nodes_manager.initialize()  # type: ignore[union-attr]
                raise SlotMoved(str(exc)) from exc
            raise


def _slot(claim: Claim) -> str:
    """The Redis key of a claim: dedupe is per (tenant, source, event id) and integration."""
    return f"{claim.dedupe_key}|{claim.field}" if claim.dedupe_key else ""

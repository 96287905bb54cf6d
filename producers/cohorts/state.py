"""The last synced membership per (audience, destination), kept in Redis.

Keys (``P`` = ``ROUTER_REDIS_KEY_PREFIX``, ``D`` = the destination or ``*`` when none is given)::

    P cohort:A:D:state            hash  meta + part:0..n   the last membership fully acknowledged
    P cohort:A:D:pending          hash  meta + part:0..n   the target of the run in progress
    P cohort:A:D:pending-unknown  hash  meta + part:0..n   ids a killed run left uncertain
    P cohort:A:D:lock             string                   the lease of the run in progress
    P cohort:A:D:version          counter                  bumped by every pending write

A membership is stored as its canonical ids (newline-joined UTF-8, in snapshot order) compressed
with zstd and cut into parts of at most 64 MB; the hashes are recomputed on load and checked
against the fingerprint in ``meta``. Why the ids and not the hashes: 64-bit hashes of 10 million
ids cannot compress below ~54 MB (their gaps carry ~43 bits each), while the ids themselves, in
export order, compress to a few MB, and rehashing costs about 2 s (docs/cohorts.md).

Every write goes to a temporary key first and is RENAMEd into place by a Lua script that first
checks the lease, so a reader sees an old or a new membership, never half of one, and a run
whose lease expired can never overwrite another run's state.

On a Redis Cluster a script and a RENAME must stay in one hash slot, so every key of one
(audience, destination), temporary keys included, carries one hash tag right after the prefix, a
digest of the two names: ``P{…}cohort:A:D:state``. A standalone Redis keeps the untagged names above
(docs/redis.md).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import zstandard
from xxhash import xxh3_64_hexdigest

from producers.cohorts.errors import CohortError
from producers.cohorts.members import HASH_NAME, Members
from router import codes, redisconn

FORMAT = 1
PART_BYTES = 64 << 20
TMP_TTL_MS = 3_600_000

_RENAME_IN = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('RENAME', KEYS[2], KEYS[3])
redis.call('PERSIST', KEYS[3])
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('RENAME', KEYS[4], KEYS[5])
  redis.call('PERSIST', KEYS[5])
else
  redis.call('DEL', KEYS[5])
end
return 1
"""
_COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[3]) end
redis.call('DEL', KEYS[4])
return 1
"""
_REFRESH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def fingerprint(members: Members) -> str:
    """A digest of the set (not the order): xxh3-64 of the sorted hashes."""
    return xxh3_64_hexdigest(members.sorted.tobytes())


def encode(members: Members, **info: Any) -> dict[str, bytes]:
    """Hash fields for ``members``: ``meta`` (JSON) and ``part:<i>`` (zstd, ≤ 64 MB each)."""
    packed = zstandard.ZstdCompressor(level=3, threads=-1).compress(members.data)
    parts = [packed[i:i + PART_BYTES] for i in range(0, len(packed), PART_BYTES)] or [b""]
    meta = {"format": FORMAT, "hash": HASH_NAME, "count": len(members), "fingerprint": fingerprint(members),
            "raw_bytes": len(members.data), "stored_bytes": len(packed), "parts": len(parts), **info}
    fields = {"meta": json.dumps(meta).encode()}
    fields.update({f"part:{i}": part for i, part in enumerate(parts)})
    return fields


def decode(fields: dict[bytes, bytes], key: str) -> Members:
    """The membership in hash ``fields``; CohortError ``cohort.state_corrupt`` if it does not check out."""
    try:
        meta = json.loads(fields[b"meta"])
        if meta.get("format") != FORMAT or meta.get("hash") != HASH_NAME:
            raise ValueError(f"format {meta.get('format')}/{meta.get('hash')} is not {FORMAT}/{HASH_NAME}")
        packed = b"".join(fields[f"part:{i}".encode()] for i in range(int(meta["parts"])))
        raw = (zstandard.ZstdDecompressor().decompress(packed, max_output_size=int(meta["raw_bytes"]))
               if meta["raw_bytes"] else b"")
        members = Members.from_canonical(raw)
        if len(members) != meta["count"] or fingerprint(members) != meta["fingerprint"]:
            raise ValueError("the ids do not match the stored count and fingerprint")
    except (KeyError, ValueError, TypeError, zstandard.ZstdError) as exc:
        raise CohortError(f"the stored cohort state {key} is unreadable ({exc}); delete the key to sync "
                          "everything again as adds (members that left meanwhile are then not removed)",
                          code=codes.COHORT_STATE_CORRUPT) from None
    return members


def store_base(prefix: str, audience: str, destination: str | None, clustered: bool) -> str:
    """The stem of the keys of (audience, destination), hash-tagged on a cluster (see above)."""
    names = (audience, destination or "*")
    return f"{prefix}{redisconn.slot_tag(clustered, *names)}cohort:{':'.join(names)}"


@dataclass(frozen=True)
class Stored:
    """What Redis holds for one (audience, destination) at the start of a run."""

    state: Members
    pending: Members | None  # the target of a run that did not finish
    pending_unknown: Members
    stored_bytes: int  # compressed size of ``state``


class CohortStore:
    """The Redis keys of one (audience, destination), and the lease that serialises its runs."""

    def __init__(self, client: redisconn.Sync, prefix: str, audience: str, destination: str | None) -> None:
        self.client = client
        base = store_base(prefix, audience, destination, redisconn.clustered(client))
        self.state_key = f"{base}:state"
        self.pending_key = f"{base}:pending"
        self.unknown_key = f"{base}:pending-unknown"
        self.lock_key = f"{base}:lock"
        self.version_key = f"{base}:version"
        self._rename_in = client.register_script(_RENAME_IN)
        self._commit = client.register_script(_COMMIT)
        self._refresh = client.register_script(_REFRESH)
        self._release = client.register_script(_RELEASE)

    # ---- lease ----------------------------------------------------------------------------

    def acquire(self, token: str, ttl_ms: int, wait_s: float) -> None:
        """Take the lease, waiting up to ``wait_s`` for a holder (perhaps a killed run) to let go."""
        end = time.monotonic() + wait_s
        while not self.client.set(self.lock_key, token, nx=True, px=ttl_ms):
            if time.monotonic() > end:
                raise CohortError(f"another sync holds {self.lock_key} (for up to {ttl_ms / 1000:.0f}s more); "
                                  "wait for it or run again", code=codes.COHORT_LOCKED)
            time.sleep(0.2)

    def refresh(self, token: str, ttl_ms: int) -> bool:
        """Extend the lease; False if it is no longer ours."""
        return bool(self._refresh(keys=[self.lock_key], args=[token, ttl_ms]))

    def release(self, token: str) -> None:
        self._release(keys=[self.lock_key], args=[token])

    # ---- memberships ----------------------------------------------------------------------

    def _read(self, key: str) -> tuple[Members, int] | None:
        fields: dict[bytes, bytes] = self.client.hgetall(key)  # type: ignore[assignment]
        if not fields:
            return None
        members = decode(fields, key)
        return members, int(json.loads(fields[b"meta"]).get("stored_bytes", 0))

    def load(self) -> Stored:
        """The stored state (empty before the first sync) and any unfinished run's journal."""
        state = self._read(self.state_key)
        pending = self._read(self.pending_key)
        unknown = self._read(self.unknown_key) if pending else None
        return Stored(state[0] if state else Members.empty(), pending[0] if pending else None,
                      unknown[0] if unknown else Members.empty(), state[1] if state else 0)

    def _write_tmp(self, key: str, members: Members, **info: Any) -> int:
        fields = encode(members, **info)
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(key)
        for name, value in fields.items():
            pipe.hset(key, name, value)
        pipe.pexpire(key, TMP_TTL_MS)  # a run killed while writing leaves nothing behind for long
        pipe.execute()
        return int(json.loads(fields["meta"])["stored_bytes"])

    def write_pending(self, token: str, target: Members, unknown: Members, sync_id: str) -> int:
        """Journal the run before it publishes: its target, and what was already uncertain.

        Returns the compressed size of ``target`` (what the state will take once committed).
        """
        version = int(self.client.incr(self.version_key))  # type: ignore[arg-type]
        info = {"version": version, "sync_id": sync_id, "written_at_ms": int(time.time() * 1000)}
        tmp = f"{self.pending_key}:tmp:{token}"
        tmp_unknown = f"{self.unknown_key}:tmp:{token}"
        size = self._write_tmp(tmp, target, **info)
        if len(unknown):
            self._write_tmp(tmp_unknown, unknown, **info)
        if self._rename_in(keys=[self.lock_key, tmp, self.pending_key, tmp_unknown, self.unknown_key],
                           args=[token]) != 1:
            self.client.delete(tmp, tmp_unknown)
            raise CohortError("the sync lost its lease before publishing; another run took over",
                              code=codes.COHORT_LEASE_LOST)
        return size

    def commit(self, token: str) -> None:
        """The pending target becomes the state, atomically, if the lease is still ours."""
        if self._commit(keys=[self.lock_key, self.pending_key, self.state_key, self.unknown_key],
                        args=[token]) != 1:
            raise CohortError("the sync lost its lease before committing; its records were published but "
                              "the state was not replaced (the next run sends them again)",
                              code=codes.COHORT_LEASE_LOST)

"""Sets of user ids as flat arrays, and the sync plan: which ids to add, which to remove. Pure.

A :class:`Members` is canonical bytes (ids in a fixed order, each followed by ``\\n``), the 64-bit
xxh3 hash of each id in the same order, and those hashes sorted. Set operations work on the
sorted hashes (numpy, no Python object per id); the strings are sliced out of the bytes only for
the ids that are published. Two distinct ids with the same 64-bit hash count as one id: for
10 million ids the chance that any pair collides is about n²/2⁶⁵ ≈ 3·10⁻⁶.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from xxhash import xxh3_64_intdigest

HASH_NAME = "xxh3_64"
CHUNK_IDS = 1000
_BLOCK = 1 << 24
_HASH_BLOCK = 1 << 23  # bytes of ids split into Python objects at a time while hashing
_FIND_BLOCK = 1 << 21


def byte_positions(arr: np.ndarray, pick: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Indices where ``pick(block)`` is true, scanning ``arr`` block by block (small temporaries)."""
    found = [np.flatnonzero(pick(arr[a:a + _BLOCK])) + a for a in range(0, len(arr), _BLOCK)]
    return np.concatenate(found).astype(np.int64) if found else np.empty(0, np.int64)


def hash_ids(data: bytes) -> np.ndarray:
    """xxh3-64 of every id in canonical ``data``, in order (uint64). Stable across processes."""
    size = len(data) - 1 if data.endswith(b"\n") else len(data)
    out: list[np.ndarray] = []
    pos = 0
    while pos < size:
        end = data.find(b"\n", min(pos + _HASH_BLOCK, size), size)
        end = size if end < 0 else end
        lines = data[pos:end].split(b"\n")
        out.append(np.fromiter(map(xxh3_64_intdigest, lines), np.uint64, count=len(lines)))
        pos = end + 1
    return np.concatenate(out) if out else np.empty(0, np.uint64)


def in_sorted(query: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Mask: which of ``query`` are in the sorted ``table``. Fast when ``query`` is sorted or ``table`` small."""
    if len(table) == 0 or len(query) == 0:
        return np.zeros(len(query), bool)
    at = np.searchsorted(table, query)
    at[at == len(table)] = 0
    return table[at] == query  # type: ignore[no-any-return]


def find(hashes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Ascending positions in ``hashes`` (any order) of the values in the sorted ``table``.

    Binary search of 10 million unsorted values is slow (cache misses at every step), so a bitmap
    over the top bits of the hashes (uniform by construction) picks the few candidates first;
    only those are checked exactly.
    """
    if len(table) == 0 or len(hashes) == 0:
        return np.empty(0, np.int64)
    bits = min(26, max(12, int(np.ceil(np.log2(len(table) * 8)))))
    shift = np.uint64(64 - bits)
    bitmap = np.zeros(1 << bits, bool)
    bitmap[table >> shift] = True
    found: list[np.ndarray] = []
    for a in range(0, len(hashes), _FIND_BLOCK):
        block = hashes[a:a + _FIND_BLOCK]
        candidates = np.flatnonzero(bitmap[block >> shift])
        found.append(candidates[in_sorted(block[candidates], table)] + a)
    return np.concatenate(found).astype(np.int64)


class Members:
    """A set of ids: canonical bytes, their hashes in the same order, and the hashes sorted."""

    __slots__ = ("_starts", "data", "hashes", "sorted")

    def __init__(self, data: bytes, hashes: np.ndarray, sorted_hashes: np.ndarray) -> None:
        self.data = data
        self.hashes = hashes
        self.sorted = sorted_hashes
        self._starts: np.ndarray | None = None

    @classmethod
    def empty(cls) -> Members:
        return cls(b"", np.empty(0, np.uint64), np.empty(0, np.uint64))

    @classmethod
    def from_canonical(cls, data: bytes) -> Members:
        """Hash canonical ids (see snapshot.py); a repeated id keeps its first position only."""
        if data and not data.endswith(b"\n"):
            data += b"\n"
        hashes = hash_ids(data)
        ordered = np.sort(hashes)
        members = cls(data, hashes, ordered)
        if len(ordered) > 1 and bool((ordered[1:] == ordered[:-1]).any()):
            _, first = np.unique(hashes, return_index=True)
            members = members.subset(np.sort(first))
        return members

    @classmethod
    def from_ids(cls, ids: Sequence[str]) -> Members:
        """From already-valid id strings (tests, DLQ records)."""
        return cls.from_canonical("".join(f"{i}\n" for i in ids).encode())

    @classmethod
    def union(cls, parts: Sequence[Members]) -> Members:
        """Every id of ``parts`` once, in order of first appearance."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls.from_canonical(b"".join(p.data for p in parts))

    def __len__(self) -> int:
        return len(self.hashes)

    @property
    def starts(self) -> np.ndarray:
        """Byte offset of each id; id ``i`` ends at ``starts[i + 1] - 1`` (before its newline)."""
        if self._starts is None:
            newlines = byte_positions(np.frombuffer(self.data, np.uint8), lambda b: b == 10)
            self._starts = np.concatenate((np.zeros(1, np.int64), newlines + 1))
        return self._starts

    def ids(self, index: np.ndarray) -> list[str]:
        """The ids at ascending positions ``index``."""
        if len(index) == 0:
            return []
        starts = self.starts
        first, last = int(index[0]), int(index[-1])
        if last - first + 1 == len(index):  # a contiguous run: one slice, one split
            return self.data[starts[first]:starts[last + 1] - 1].decode().split("\n")
        data = self.data
        return [data[s:e - 1].decode() for s, e in zip(starts[index].tolist(), starts[index + 1].tolist(),
                                                         strict=True)]

    def subset(self, index: np.ndarray) -> Members:
        """The ids at ascending positions ``index``, in that order."""
        if len(index) == len(self):
            return self
        if len(index) == 0:
            return Members.empty()
        starts = self.starts
        keep = np.zeros(len(self), bool)
        keep[index] = True
        mask = np.repeat(keep, np.diff(starts))  # one flag per byte, newline included
        data = np.frombuffer(self.data, np.uint8)[mask].tobytes()
        hashes = self.hashes[index]
        return Members(data, hashes, np.sort(hashes))

    def positions(self, chosen_sorted: np.ndarray) -> np.ndarray:
        """Ascending positions of the ids whose hashes are in ``chosen_sorted`` (a sorted subset)."""
        n = len(self)
        if len(chosen_sorted) == n:
            return np.arange(n, dtype=np.int64)
        if len(chosen_sorted) <= n // 2:
            return find(self.hashes, chosen_sorted)
        # Look up the smaller side.
        others = self.sorted[~in_sorted(self.sorted, chosen_sorted)]
        keep = np.ones(n, bool)
        keep[find(self.hashes, others)] = False
        return np.flatnonzero(keep)

    def select(self, keep_sorted: np.ndarray) -> np.ndarray:
        """Positions of the ids for which ``keep_sorted`` (a mask over ``self.sorted``) is true."""
        return self.positions(self.sorted[keep_sorted])


@dataclass(frozen=True)
class Segment:
    """Ids of one :class:`Members` to publish, all adds or all removes."""

    members: Members
    index: np.ndarray
    remove: bool


@dataclass(frozen=True)
class Plan:
    """What one sync publishes, and the counts of its summary."""

    segments: tuple[Segment, ...]
    added: int
    removed: int
    unchanged: int

    def records(self, chunk: int = CHUNK_IDS) -> int:
        """How many records the plan makes (each at most ``chunk`` ids)."""
        return sum(-(-len(s.index) // chunk) for s in self.segments)

    def chunks(self, chunk: int = CHUNK_IDS) -> Iterator[tuple[list[str], bool]]:
        """``(sorted ids, should_remove)`` per record: adds first, then removes."""
        for segment in self.segments:
            for a in range(0, len(segment.index), chunk):
                ids = segment.members.ids(segment.index[a:a + chunk])
                ids.sort()
                yield ids, segment.remove


def plan_sync(target: Members, old: Members, unknown: Members | None = None, failed_adds: Members | None = None,
              failed_removes: Members | None = None) -> Plan:
    """The changes that make the destination hold ``target``, given what was synced before.

    - ``old``: the last membership every record of which was acknowledged;
    - ``unknown``: ids a killed run may or may not have changed (see :func:`uncertain`): each is
      sent again, as an add if it is in ``target``, else as a remove;
    - ``failed_adds`` / ``failed_removes``: ids whose records ended in a DLQ: a failed add still in
      ``target`` is added again, a failed remove not in ``target`` is removed again.
    """
    unknown = unknown or Members.empty()
    failed_adds = failed_adds or Members.empty()
    failed_removes = failed_removes or Members.empty()
    resend = np.union1d(unknown.sorted, failed_adds.sorted)
    add_mask = ~in_sorted(target.sorted, old.sorted) | in_sorted(target.sorted, resend)
    adds = target.select(add_mask)
    segments = [Segment(target, adds, False)] if len(adds) else []
    removed = 0
    known: list[np.ndarray] = [target.sorted]
    for source in (old, unknown, failed_removes):
        mask = np.ones(len(source), bool)
        for table in known:
            mask &= ~in_sorted(source.sorted, table)
        index = source.select(mask)
        if len(index):
            segments.append(Segment(source, index, True))
            removed += len(index)
        known.append(source.sorted)
    return Plan(tuple(segments), len(adds), removed, len(target) - len(adds))


def uncertain(old: Members, pending_target: Members, pending_unknown: Members) -> Members:
    """Ids whose state at the destination a killed run left unknown.

    A run that died after writing its pending target may have published any part of its diff
    from ``old`` to that target, and any part of what was already unknown before it.
    """
    changed_old = old.select(~in_sorted(old.sorted, pending_target.sorted))
    changed_new = pending_target.select(~in_sorted(pending_target.sorted, old.sorted))
    return Members.union([pending_unknown, old.subset(changed_old), pending_target.subset(changed_new)])

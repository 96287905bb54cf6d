"""Integration and worker health, kept in Redis by the workers and read by the admin page (DESIGN §8).

Per (integration, tenant): last success, last error (code, message, time, a redacted sample) and
per-minute ok/fail counts for the success rate. The delivery worker writes once per committed
batch (one pipeline); the route worker merges its finished batches' tallies (``HealthBatch.merge``)
and writes them at most once a second, off its commit path. The page is right with any number of
replicas and survives restarts.

Per worker: one field of the ``<prefix>health:workers`` hash (``kind:host:pid``), a JSON row the
worker rewrites every :data:`WORKER_ROW_EVERY_S` seconds: when it wrote it (its beat), whether its
batches are failing and since when (``router.progress``), and when they last succeeded. A worker
whose Redis is what fails cannot write it: the page then shows the row going stale by its age.
A worker removes its row when it stops; rows of crashed workers are dropped after
:data:`WORKER_FORGET_S` by the next worker that writes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from router import redisconn
from router.progress import ProgressStatus
from router.redact import fields_from_env, readable, redact_text

log = logging.getLogger("router.health")

BUCKET_TTL_S = 2 * 3600
SAMPLE_LIMIT = 500
WORKER_ROW_EVERY_S = 5.0  # a worker rewrites its row this often
WORKER_STALE_S = 30.0  # the page calls a row not rewritten for this long stale
WORKER_FORGET_S = 3600.0  # a row not rewritten for this long (a crashed worker's) is dropped


@dataclass
class Tally:
    ok: int = 0
    fail: int = 0
    last_error: tuple[str, str, bytes | None] | None = None  # code, message, raw value


@dataclass
class HealthBatch:
    """What one batch did, by (integration, tenant)."""

    rows: dict[tuple[str, str], Tally] = field(default_factory=dict)

    def ok(self, integration: str, tenant: str, n: int = 1) -> None:
        self.rows.setdefault((integration, tenant), Tally()).ok += n

    def fail(self, integration: str, tenant: str, code: str, message: str, value: bytes | None) -> None:
        tally = self.rows.setdefault((integration, tenant), Tally())
        tally.fail += 1
        tally.last_error = (code, message, value)

    def clear(self) -> None:
        self.rows.clear()

    def merge(self, other: HealthBatch) -> None:
        """Add ``other``'s tallies to these (its last error, when it has one, wins) and clear it."""
        for key, tally in other.rows.items():
            mine = self.rows.get(key)
            if mine is None:
                self.rows[key] = tally
                continue
            mine.ok += tally.ok
            mine.fail += tally.fail
            if tally.last_error is not None:
                mine.last_error = tally.last_error
        other.rows = {}


class HealthWriter:
    """Queues a batch's tallies onto a Redis pipeline (sync or asyncio); the caller executes it."""

    def __init__(self, prefix: str, success_field: str = "last_success_ms") -> None:
        self.prefix = prefix
        self.success_field = success_field
        self.redact_fields = fields_from_env(os.environ)

    def write(self, client: redisconn.Sync, batch: HealthBatch) -> None:
        """Write with a synchronous client (one round trip)."""
        if batch.rows:
            pipe = client.pipeline(transaction=False)
            self.queue(pipe, batch)
            pipe.execute()

    def queue(self, pipe: Any, batch: HealthBatch) -> None:
        """Queue the batch's commands on ``pipe`` and clear the batch."""
        now_ms = int(time.time() * 1000)
        minute = now_ms // 60_000
        for (integration, tenant), tally in batch.rows.items():
            row = row_key(self.prefix, integration, tenant)
            pipe.sadd(f"{self.prefix}health:index", f"{integration}|{tenant}")
            bucket = f"{row}:m:{minute}"
            if tally.ok:
                pipe.hset(row, self.success_field, now_ms)
                pipe.hincrby(bucket, "ok", tally.ok)
            if tally.fail:
                pipe.hincrby(bucket, "fail", tally.fail)
            if tally.ok or tally.fail:
                pipe.expire(bucket, BUCKET_TTL_S)
            if tally.last_error is not None:
                code, message, value = tally.last_error
                sample = readable(value, self.redact_fields).short(SAMPLE_LIMIT)
                message = redact_text(message[:2000], self.redact_fields)  # messages quote values too
                pipe.hset(row, mapping={"last_error_code": code, "last_error_message": message[:500],
                                        "last_error_ms": now_ms, "last_error_sample": sample})
        batch.clear()


def row_key(prefix: str, integration: str, tenant: str) -> str:
    return f"{prefix}health:{integration}:{tenant}"


# ---- worker rows ---------------------------------------------------------------------------------


def workers_key(prefix: str) -> str:
    """The hash of worker rows (field: :func:`worker_field`, value: :func:`worker_entry`)."""
    return f"{prefix}health:workers"


def worker_field(kind: str, member: str) -> str:
    """A worker's field in :func:`workers_key`: its kind and ``host:pid``."""
    return f"{kind}:{member}"


def worker_entry(kind: str, group: str, member: str, status: ProgressStatus, now_ms: int | None = None) -> bytes:
    """A worker's row as of ``now_ms``: its beat, and its failure run from ``status`` (no error text)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms

    def ago_ms(seconds: float | None) -> int | None:
        return None if seconds is None else now_ms - int(seconds * 1000)

    return orjson.dumps({"kind": kind, "group": group, "member": member, "beat_ms": now_ms,
                         "failing": status.failing, "failing_since_ms": ago_ms(status.since_s),
                         "reason": status.reason, "part": status.part,
                         "last_success_ms": ago_ms(status.last_success_s)})


def _forgotten(entries: Mapping[bytes | str, bytes | str], now_ms: int) -> list[bytes | str]:
    """Fields of rows not rewritten for :data:`WORKER_FORGET_S` (or unreadable)."""
    old = []
    for name, raw in entries.items():
        try:
            beat = int(orjson.loads(raw).get("beat_ms", 0))
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            beat = 0
        if now_ms - beat > WORKER_FORGET_S * 1000:
            old.append(name)
    return old


_writes = {"n": 0}
_PRUNE_EVERY = int(600 / WORKER_ROW_EVERY_S)  # one prune of crashed workers' rows per ~10 min per worker


def write_worker(client: redisconn.Sync, prefix: str, name: str, entry: bytes) -> None:
    """Write a worker's row (best effort: the page is for people, never a reason to fail a batch)."""
    key = workers_key(prefix)
    try:
        client.hset(key, name, entry)
        _writes["n"] += 1
        if _writes["n"] % _PRUNE_EVERY == 1:
            stale = _forgotten(client.hgetall(key), int(time.time() * 1000))
            if stale:
                client.hdel(key, *stale)
    except redisconn.UNAVAILABLE as exc:
        log.info("worker row not written: %s", exc)


async def write_worker_async(client: redisconn.Async, prefix: str, name: str, entry: bytes) -> None:
    """:func:`write_worker` on an asyncio client."""
    key = workers_key(prefix)
    try:
        await client.hset(key, name, entry)
        _writes["n"] += 1
        if _writes["n"] % _PRUNE_EVERY == 1:
            stale = _forgotten(await client.hgetall(key), int(time.time() * 1000))
            if stale:
                await client.hdel(key, *stale)
    except redisconn.UNAVAILABLE as exc:
        log.info("worker row not written: %s", exc)


def forget_worker(client: redisconn.Sync | None, prefix: str, name: str) -> None:
    """Remove a stopping worker's row (best effort)."""
    if client is None:
        return
    try:
        client.hdel(workers_key(prefix), name)
    except redisconn.UNAVAILABLE as exc:
        log.info("worker row not removed: %s", exc)

"""Integration health, kept in Redis by the workers and read by the admin page (DESIGN §8).

Per (integration, tenant): last success, last error (code, message, time, a redacted sample) and
per-minute ok/fail counts for the success rate. Workers write once per committed batch (one
pipeline), so the page is right with any number of replicas and survives restarts.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from router import redisconn
from router.redact import fields_from_env, readable, redact_text

BUCKET_TTL_S = 2 * 3600
SAMPLE_LIMIT = 500


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

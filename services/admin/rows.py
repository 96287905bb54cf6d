"""Health rows as the page shows them: the workers' Redis health hashes and the integration states.

Reading is one pipelined round trip: every state, every row's hash and the last 60 per-minute
ok/fail buckets of every row (router/health.py writes them). Turning the replies into rows is
pure, so it is tested with plain data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from router import redisconn
from router.controls import IntegrationState, parse, state_key
from router.health import row_key

NO_TENANT = "—"  # the row of an integration no worker has reported on yet
WINDOW_MINUTES = 60


@dataclass(frozen=True)
class LastError:
    """The most recent failure a worker recorded for a row (the sample is already redacted)."""

    code: str
    message: str
    at_ms: int
    sample: str


@dataclass(frozen=True)
class HealthRow:
    """One integration x tenant, as read from Redis."""

    integration: str
    tenant: str
    state: IntegrationState
    last_success_ms: int | None  # delivered to the partner
    last_routed_ms: int | None  # mapped onto delivery.<destination>
    last_error: LastError | None
    ok_1h: int
    fail_1h: int

    @property
    def success_rate(self) -> float | None:
        """ok / (ok + fail) over the last hour; None without traffic."""
        return success_rate(self.ok_1h, self.fail_1h)


def success_rate(ok: int, fail: int) -> float | None:
    """ok / (ok + fail), or None when both are zero."""
    total = ok + fail
    return ok / total if total else None


def window_minutes(now_ms: int, minutes: int = WINDOW_MINUTES) -> list[int]:
    """The epoch minutes of the last ``minutes`` buckets, the current one included, oldest first."""
    current = now_ms // 60_000
    return list(range(current - minutes + 1, current + 1))


def row_pairs(index: Iterable[str], integrations: Sequence[str]) -> list[tuple[str, str]]:
    """(integration, tenant) of every row to show, sorted.

    Index members are ``integration|tenant``; members of integrations not in the catalog are
    left out (their spec was removed). An integration without any member gets one row with
    tenant :data:`NO_TENANT`.
    """
    known = set(integrations)
    seen: set[tuple[str, str]] = set()
    for member in index:
        integration, sep, tenant = member.partition("|")
        if sep and integration in known:
            seen.add((integration, tenant))
    with_rows = {integration for integration, _ in seen}
    seen.update((name, NO_TENANT) for name in known - with_rows)
    return sorted(seen)


def _int(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        return None


def build_row(integration: str, tenant: str, state: IntegrationState, fields: Mapping[str, str],
              buckets: Iterable[Sequence[str | None]]) -> HealthRow:
    """A row from its health hash and its per-minute ``[ok, fail]`` buckets (missing = 0)."""
    ok = fail = 0
    for bucket_ok, bucket_fail in buckets:
        ok += _int(bucket_ok) or 0
        fail += _int(bucket_fail) or 0
    code = fields.get("last_error_code")
    error = None
    if code:
        error = LastError(code, fields.get("last_error_message", ""), _int(fields.get("last_error_ms")) or 0,
                          fields.get("last_error_sample", ""))
    return HealthRow(integration, tenant, state, _int(fields.get("last_success_ms")),
                     _int(fields.get("last_routed_ms")), error, ok, fail)


async def read_rows(client: redisconn.Async, prefix: str, integrations: Sequence[str], now_ms: int) -> list[HealthRow]:
    """Every row of ``integrations`` in two round trips (the index, then one pipeline; on a cluster
    the pipeline goes to each node at once, its keys being spread over slots).

    ``client`` must decode responses (``decode_responses=True``).
    """
    index = await client.smembers(f"{prefix}health:index")
    pairs = row_pairs((m if isinstance(m, str) else m.decode() for m in index), integrations)
    minutes = window_minutes(now_ms)
    pipe = client.pipeline(transaction=False)
    for name in integrations:
        pipe.get(state_key(prefix, name))
    for integration, tenant in pairs:
        row = row_key(prefix, integration, tenant)
        pipe.hgetall(row)
        for minute in minutes:
            pipe.hmget(f"{row}:m:{minute}", ["ok", "fail"])
    replies = await pipe.execute()
    states = {name: parse(name, replies[i]) for i, name in enumerate(integrations)}
    rows = []
    at = len(integrations)
    for integration, tenant in pairs:
        fields, buckets = replies[at], replies[at + 1:at + 1 + len(minutes)]
        at += 1 + len(minutes)
        rows.append(build_row(integration, tenant, states[integration], fields or {}, buckets))
    return rows

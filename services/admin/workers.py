"""The page's workers section: each route and delivery worker's row (``router.health`` worker rows).

A worker rewrites its row every few seconds with whether its batches are failing (``router.progress``).
A worker whose Redis is what fails cannot write it, so a row's age is part of the truth: a row
not rewritten for :data:`~router.health.WORKER_STALE_S` is shown **stale** (the worker stopped,
or cannot reach Redis; its ``/readyz`` says which). Parsing and rendering are pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from router.health import WORKER_FORGET_S, WORKER_STALE_S
from services.admin.page import esc, when


@dataclass(frozen=True)
class WorkerRow:
    """One worker as it last reported itself."""

    kind: str
    group: str
    member: str
    beat_ms: int  # when it last wrote this row
    failing: bool  # failing for ROUTER_FAILING_AFTER_S: its probes answer 503
    failing_since_ms: int | None  # its current run of failures began (None: none since its last success)
    reason: str | None  # redis | broker | other
    part: str | None  # which of its work fails (route: batch; deliver: requests, dead_letters, states)
    last_success_ms: int | None

    def state(self, now_ms: int) -> str:
        """``stale``, ``failing``, ``retrying`` (failures, not yet for long) or ``ok``."""
        if now_ms - self.beat_ms > WORKER_STALE_S * 1000:
            return "stale"
        if self.failing:
            return "failing"
        return "retrying" if self.failing_since_ms is not None else "ok"


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_str(value: Any) -> str | None:
    return value[:40] if isinstance(value, str) else None


def worker_rows(entries: Mapping[bytes | str, bytes | str], now_ms: int) -> list[WorkerRow]:
    """The rows of the ``<prefix>health:workers`` hash still worth showing, by kind then member;
    unreadable entries and rows older than :data:`WORKER_FORGET_S` are left out."""
    rows = []
    for raw in entries.values():
        try:
            doc = orjson.loads(raw)
            row = WorkerRow(str(doc["kind"]), str(doc["group"]), str(doc["member"]), int(doc["beat_ms"]),
                            doc.get("failing") is True, _opt_int(doc.get("failing_since_ms")),
                            _opt_str(doc.get("reason")), _opt_str(doc.get("part")),
                            _opt_int(doc.get("last_success_ms")))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            continue
        if now_ms - row.beat_ms <= WORKER_FORGET_S * 1000:
            rows.append(row)
    return sorted(rows, key=lambda r: (r.kind, r.group, r.member))


def worker_json(row: WorkerRow, now_ms: int, iso: Any) -> dict[str, Any]:
    """One worker of ``GET /api/health`` (``iso`` formats epoch ms)."""
    return {"kind": row.kind, "group": row.group, "member": row.member, "state": row.state(now_ms),
            "reported_at": iso(row.beat_ms), "failing": row.failing,
            "failing_since": iso(row.failing_since_ms) if row.failing_since_ms else None,
            "reason": row.reason, "part": row.part,
            "last_success": iso(row.last_success_ms) if row.last_success_ms else None}


_STATE_TEXT = {"ok": "ok", "retrying": "retrying", "failing": "failing", "stale": "not reporting"}


def _status_cell(row: WorkerRow, now_ms: int) -> str:
    state = row.state(now_ms)
    detail = ""
    if state == "stale":
        detail = (f"last report {when(row.beat_ms, now_ms)}: stopped, or cannot reach Redis "
                  f"(its <code>/readyz</code> says which)")
    elif row.failing_since_ms is not None:
        detail = (f"{esc(row.part or 'work')} failing on {esc(row.reason or 'other')} since "
                  f"{when(row.failing_since_ms, now_ms)}")
    small = f'<div class="small">{detail}</div>' if detail else ""
    return (f'<td><span class="badge badge-worker-{esc(state)}" data-testid="worker-state">'
            f"{esc(_STATE_TEXT[state])}</span>{small}</td>")


def render_workers(rows: list[WorkerRow], now_ms: int) -> tuple[str, str]:
    """An alert per failing worker (for the top of the page), and the workers table (empty when no
    worker reported)."""
    if not rows:
        return "", ""
    alerts = "".join(
        f'<div class="flash flash-error" role="alert" data-testid="worker-failing">The {esc(r.kind)} worker '
        f"<code>{esc(r.member)}</code> is failing: its {esc(r.part or 'work')} has failed on "
        f"{esc(r.reason or 'other')} since {when(r.failing_since_ms, now_ms)}; its probes answer 503.</div>"
        for r in rows if r.state(now_ms) == "failing")
    body = "".join(
        f'<tr data-testid="worker-{esc(r.kind)}-{esc(r.member)}"><th scope="row">{esc(r.member)}</th>'
        f"<td>{esc(r.kind)}</td><td><code>{esc(r.group)}</code></td>{_status_cell(r, now_ms)}"
        f'<td data-testid="worker-last-success">{when(r.last_success_ms, now_ms)}</td>'
        f"<td>{when(r.beat_ms, now_ms)}</td></tr>" for r in rows)
    return alerts, f"""<table data-testid="workers">
<caption>Workers. A worker whose batches keep failing (Redis, the broker) is <em>failing</em> after
ROUTER_FAILING_AFTER_S and answers 503 on <code>/readyz</code> and <code>/healthz</code>; one that has not
reported for {WORKER_STALE_S:.0f} s is <em>not reporting</em>.</caption>
<thead><tr><th scope="col">Worker</th><th scope="col">Kind</th><th scope="col">Group</th>
<th scope="col">Status</th><th scope="col">Last success</th><th scope="col">Reported</th></tr></thead>
<tbody>
{body}
</tbody>
</table>
"""

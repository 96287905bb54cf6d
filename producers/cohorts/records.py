"""What one `CohortMembershipChange` record looks like: ids, fields and headers. Pure.

The sync id names the audience, so the event id of every record (``<sync id>:<chunk>``) says which
audience it belongs to; the carry-over reader relies on that to pick an audience's records out of
a destination's DLQ, where the route worker's output carries its own headers.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from router import headers as h

SOURCE = "cohort-sync"


def new_sync_id(audience: str, now: datetime | None = None) -> str:
    """``<audience>-<UTC yyyymmddThhmmssZ>-<6 random hex>``: new for every run."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{audience}-{stamp}-{secrets.token_hex(3)}"


def change_id(sync_id: str, chunk: int) -> str:
    """The record's event id (dedupe key): unique per chunk of a run."""
    return f"{sync_id}:{chunk}"


def audience_of(event_id: str) -> str | None:
    """The audience in an event id made by :func:`change_id`, or None if it is not one."""
    sync_id, sep, chunk = event_id.rpartition(":")
    if not sep or not (chunk.isascii() and chunk.isdigit()):
        return None
    parts = sync_id.rsplit("-", 2)
    if len(parts) != 3 or len(parts[2]) != 6 or not parts[1].endswith("Z"):
        return None
    return parts[0]


def change_record(sync_id: str, chunk: int, audience: str, destination: str | None, user_ids: list[str],
                  should_remove: bool, emitted_at_ms: int) -> dict[str, Any]:
    """The Avro record (schemas/avro/router.cohort.CohortMembershipChange.avsc)."""
    return {"change_id": change_id(sync_id, chunk), "audience": audience, "destination": destination,
            "sync_id": sync_id, "sequence": chunk, "user_ids": user_ids, "should_remove": should_remove,
            "emitted_at": emitted_at_ms}


def change_headers(tenant: str, event_id: str, received_at_ms: int, trace_id: str
                   ) -> list[tuple[str, str | bytes | None]]:
    """DESIGN §2 headers; one trace per sync, one span id per record."""
    return [(h.TENANT, tenant.encode()), (h.SOURCE, SOURCE.encode()), (h.EVENT_ID, event_id.encode()),
            (h.RECEIVED_AT, str(received_at_ms).encode()),
            (h.TRACEPARENT, f"00-{trace_id}-{secrets.token_hex(8)}-01".encode())]


def changes_in(record: Any) -> Iterator[tuple[list[str], bool]]:
    """``(user ids, should_remove)`` in a decoded DLQ value.

    Either a `CohortMembershipChange` (a route-stage failure: the DLQ keeps the original value) or
    a cohort import mapped from one (a delivery failure): ``cohort_changes[].user_ids`` and
    ``.should_remove``.
    """
    if not isinstance(record, dict):
        return
    changes = record.get("cohort_changes")
    for change in changes if isinstance(changes, list) else [record]:
        if not isinstance(change, dict):
            continue
        ids, remove = change.get("user_ids"), change.get("should_remove")
        if isinstance(ids, list) and isinstance(remove, bool):
            yield [str(i) for i in ids if isinstance(i, str | int)], remove

"""Refusals that keep a broken export from emptying an audience. Pure.

A snapshot is the whole truth about an audience: whoever is not in it is removed at the
destination. An export that failed half-way (an empty file, a truncated query) would therefore
remove real members, as an empty file once removed 1,996 of 1,996. Two checks run before anything
is published or journaled, and each is lifted by a flag that says the change is meant:

- a snapshot without a single valid id is refused (``cohort.empty_snapshot``) unless
  ``--allow-empty``; it is checked when the file has been read, before the state is loaded;
- a run that would remove more than ``--max-removal-share`` (default 0.5) of the last synced
  membership is refused (``cohort.too_many_removals``). The share counts the members of the last
  synced state that the snapshot lacks, over the size of that state. Ids that a killed run or a
  DLQ left to send again are not counted: they were decided by an earlier run.
"""

from __future__ import annotations

import math

import numpy as np

from producers.cohorts.errors import CohortError
from producers.cohorts.members import Members, in_sorted
from router import codes

DEFAULT_MAX_REMOVAL_SHARE = 0.5


def check_not_empty(has_ids: bool, skipped: int, snapshot: str, allow_empty: bool) -> None:
    """Refuse a snapshot without a valid id (``skipped``: invalid lines skipped) unless ``allow_empty``."""
    if has_ids or allow_empty:
        return
    why = f" ({skipped:,} invalid line(s) skipped)" if skipped else ""
    raise CohortError(f"the snapshot {snapshot} holds no id{why}: syncing it would remove every member of the "
                      "audience; nothing was published (--allow-empty confirms that the audience is now empty)",
                      code=codes.COHORT_EMPTY_SNAPSHOT)


def removed_members(old: Members, target: Members) -> int:
    """How many members of ``old`` (the last synced state) are not in ``target`` (the snapshot)."""
    if len(old) == 0:
        return 0
    return int(np.count_nonzero(~in_sorted(old.sorted, target.sorted)))


def check_removals(removed: int, members: int, audience: str, max_share: float) -> None:
    """Refuse removing more than ``max_share`` of the ``members`` last synced (exactly the share passes)."""
    if members == 0 or removed / members <= max_share:
        return
    share = removed / members
    needed = math.ceil(share * 100 - 1e-9) / 100  # the smallest two-decimal share that lets this run through
    raise CohortError(f"the snapshot would remove {removed:,} of {members:,} members of {audience} "
                      f"({share:.0%}), more than the {max_share:.0%} allowed; nothing was published "
                      f"(--max-removal-share {needed:g} allows it)", code=codes.COHORT_TOO_MANY_REMOVALS)


__all__ = ["DEFAULT_MAX_REMOVAL_SHARE", "check_not_empty", "check_removals", "removed_members"]

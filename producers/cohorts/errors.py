"""The cohort sync's errors: one class under ``RouterError``, with stable ``cohort.*`` codes.

Codes: ``cohort.invalid_snapshot`` (bad lines, with ``--on-invalid reject``),
``cohort.snapshot_unreadable``, ``cohort.empty_snapshot`` (no valid id, without ``--allow-empty``),
``cohort.too_many_removals`` (more than ``--max-removal-share`` of the last synced members would go),
``cohort.state_corrupt``, ``cohort.locked`` (another sync of the same audience and destination holds
the lease), ``cohort.lease_lost``, ``cohort.publish_failed`` (a record was not acknowledged).
"""

from __future__ import annotations

from router import codes
from router.errors import RouterError


class CohortError(RouterError):
    """A cohort sync that cannot go on; the stored state is never replaced after one."""

    code = codes.COHORT_ERROR

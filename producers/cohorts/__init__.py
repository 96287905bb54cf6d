"""Cohort sync: membership snapshots → diffs → `CohortMembershipChange` records on cohort.<audience>.

``snapshot`` parses files, ``members`` holds id sets and computes the plan, ``state`` keeps the
last synced membership in Redis, ``carry`` reads the DLQs for ids to retry, ``publish`` writes
records, ``sync`` runs one sync in a fixed order and ``cli`` is `router cohort sync`.
See docs/cohorts.md.
"""

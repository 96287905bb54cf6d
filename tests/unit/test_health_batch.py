"""Health tallies gathered across batches (the route worker writes them at most once a second)."""

from __future__ import annotations

from router.health import HealthBatch


def test_merging_adds_counts_keeps_the_latest_error_and_empties_the_other() -> None:
    pending, batch = HealthBatch(), HealthBatch()
    batch.ok("int-a", "acme", 3)
    batch.fail("int-a", "acme", "map.required_missing", "title missing", b"{}")
    pending.merge(batch)
    assert batch.rows == {}

    batch.ok("int-a", "acme", 2)
    batch.ok("int-b", "globex")
    pending.merge(batch)
    later = HealthBatch()
    later.fail("int-a", "acme", "encode.too_large", "too large", None)
    pending.merge(later)

    acme, globex = pending.rows["int-a", "acme"], pending.rows["int-b", "globex"]
    assert (acme.ok, acme.fail, acme.last_error) == (5, 2, ("encode.too_large", "too large", None))
    assert (globex.ok, globex.fail, globex.last_error) == (1, 0, None)


def test_a_batch_without_an_error_keeps_the_earlier_one() -> None:
    pending, batch = HealthBatch(), HealthBatch()
    batch.fail("int-a", "acme", "map.required_missing", "title missing", b"{}")
    pending.merge(batch)
    batch.ok("int-a", "acme")
    pending.merge(batch)
    assert pending.rows["int-a", "acme"].last_error == ("map.required_missing", "title missing", b"{}")

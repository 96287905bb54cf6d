"""`router dlq ls` counts a failure once, however many copies a crash left in the DLQ."""

from __future__ import annotations

from router import headers as h
from router.dlq.read import DlqRecord
from tools.dlq.cli import TopicStats


def _copy(dlq_offset: int, original_offset: int, integration: str = "zd", code: str = "map.required_missing"
          ) -> DlqRecord:
    headers = ((h.ORIGINAL_TOPIC, b"ingest.zendesk"), (h.ORIGINAL_PARTITION, b"0"),
               (h.ORIGINAL_OFFSET, str(original_offset).encode()), (h.INTEGRATION, integration.encode()),
               (h.CONSUMER_GROUP, b"router.route"), (h.ERROR_CODE, code.encode()))
    return DlqRecord("ingest.zendesk.dlq", 0, dlq_offset, 1000 + dlq_offset, None, b"{}", headers)


def test_a_second_copy_of_one_failure_is_not_counted_again() -> None:
    stats = TopicStats("ingest.zendesk.dlq")
    for record in (_copy(0, 10), _copy(1, 11), _copy(2, 10), _copy(3, 10, integration="other")):
        stats.add(record)
    assert (stats.depth, stats.records) == (3, 4)
    assert stats.by_code == {"map.required_missing": 3}
    assert stats.by_integration == {"zd": 2, "other": 1}


def test_records_without_coordinates_are_each_counted() -> None:
    stats = TopicStats("x.dlq")
    for offset in range(3):
        stats.add(DlqRecord("x.dlq", 0, offset, 0, None, b"", ()))
    assert (stats.depth, stats.records) == (3, 3)

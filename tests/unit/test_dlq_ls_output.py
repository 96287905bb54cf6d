"""`router dlq ls` for people at 80 columns and for scripts through a pipe (issue 22)."""

from __future__ import annotations

from collections import Counter

from rich.console import Console

from tools.dlq.cli import LS_FIELDS, TopicStats, ls_table, ls_text


def _stats() -> list[TopicStats]:
    return [TopicStats("ingest.zendesk-escalations-to-pagerduty.dlq", depth=1234, records=1240,
                       oldest_ms=1_796_000_000_000, newest_ms=1_796_300_000_000,
                       by_code=Counter({"validate.required_missing": 1000, "decode.invalid_json": 234}),
                       by_integration=Counter({"zendesk-escalations-to-pagerduty": 1234})),
            TopicStats("delivery.pagerduty.dlq", depth=7, records=7, oldest_ms=1_796_200_000_000,
                       newest_ms=1_796_200_000_000, by_code=Counter({"deliver.http_4xx": 7}),
                       by_integration=Counter({"zendesk-escalations-to-pagerduty": 7}))]


def test_at_80_columns_every_column_keeps_its_content() -> None:
    console = Console(width=80, record=True, color_system=None)
    console.print(ls_table(_stats()))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for needle in ("depth", "1234", "2026-11-30 00:53:20Z", "by code", "integration", "1000", "validate.requ"):
        assert needle in text, f"{needle!r} lost at 80 columns:\n{text}"
    # The key columns come first on each topic's first line (long names fold below it).
    assert any("1234" in line and "ingest." in line for line in text.splitlines()), text


def test_through_a_pipe_it_is_tab_separated_lines() -> None:
    lines = ls_text(_stats()).splitlines()
    assert lines[0].split("\t") == list(LS_FIELDS)
    first = dict(zip(LS_FIELDS, lines[1].split("\t"), strict=True))
    assert first["topic"] == "ingest.zendesk-escalations-to-pagerduty.dlq"
    assert first["depth"] == "1234"
    assert first["by_code"] == "validate.required_missing=1000,decode.invalid_json=234"
    assert len(lines) == 3

"""Redaction costs what is shown, not what the record holds (a 2 MB record without an "@" hung
the route worker's health write: the e-mail pattern rescanned the run from every position)."""

from __future__ import annotations

from router.redact import DEFAULT_FIELDS, MASK, TEXT_LIMIT, readable, redact_text


def test_a_huge_word_without_an_at_sign_is_redacted_and_shown_cut() -> None:
    shown = readable(b"x" * 2_000_000, DEFAULT_FIELDS)
    assert shown.kind == "text" and shown.size == 2_000_000
    assert shown.doc.startswith("x" * TEXT_LIMIT) and shown.doc.endswith(f"(+{2_000_000 - TEXT_LIMIT} bytes)")
    assert redact_text("a" * 300_000 + " ana@example.com", DEFAULT_FIELDS).endswith(MASK)


def test_a_credential_across_the_cut_is_still_masked_whole() -> None:
    value = b"y" * (TEXT_LIMIT - 10) + b" Authorization: Bearer sk_live_0123456789abcdef " + b"z" * 5_000_000
    shown = readable(value, DEFAULT_FIELDS)
    assert "sk_live" not in shown.doc and "01234" not in shown.doc

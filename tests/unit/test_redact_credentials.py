"""Redaction in one place (issue 15, finding 7): credential shapes in free text are masked whole,
on every surface that shows text — `router dlq show`, health messages and samples, state reasons."""

from __future__ import annotations

import pytest

from router.redact import DEFAULT_FIELDS, readable, redact_text

LEAKS = [
    ("Authorization: Bearer sk_live_51HxYzAbCdEf", "sk_live_51HxYzAbCdEf"),
    ("authorization=Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ('{"error": "token tok_live_8sK2mQ9x revoked"', "tok_live_8sK2mQ9x"),
    ("POST /oauth/token client_id=cid&client_secret=hunter22&grant_type=x", "hunter22"),
    ("refresh failed password=s3cr3t!", "s3cr3t!"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl was refused", "eyJhbGciOiJIUzI1NiJ9"),
    ("field requester: 'alice@example.com' (str) does not fit", "alice@example.com"),
]


@pytest.mark.parametrize(("text", "secret"), LEAKS)
def test_credential_shapes_are_masked_in_free_text(text: str, secret: str) -> None:
    shown = redact_text(text, DEFAULT_FIELDS)
    assert secret not in shown and "***" in shown, shown


@pytest.mark.parametrize(("text", "secret"), LEAKS)
def test_a_value_that_is_not_json_is_shown_masked(text: str, secret: str) -> None:
    assert secret not in readable(text.encode(), DEFAULT_FIELDS).short(1000)


def test_json_string_values_are_masked_under_any_key() -> None:
    doc = readable(b'{"note": "use sk_live_abcdef123456", "title": "Checkout down"}', DEFAULT_FIELDS).doc
    assert doc == {"note": "use ***", "title": "Checkout down"}


def test_plain_words_are_left_alone() -> None:
    text = "the token expired; basic plan; bearer of bad news"
    assert redact_text(text, DEFAULT_FIELDS) == text

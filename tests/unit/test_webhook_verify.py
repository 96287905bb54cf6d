"""Signature schemes with plain bytes: valid, tampered, wrong secret, rotation, time, malformed headers.

Standard Webhooks signatures are also cross-checked against the reference ``standardwebhooks``
package, both ways, so the gateway accepts what partners' libraries send.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook

from producers.webhooks.verify import (
    BAD_SIGNATURE,
    STALE_TIMESTAMP,
    Rejection,
    verify,
)
from router.spec.sources import decode_standard_webhooks_secret
from support.signing import sign_github, sign_standard_webhooks, sign_stripe

NOW = 1_763_640_000
BODY = b'{"event_id":"evt-1","type":"ticket.escalated","data":{"ticket":{"id":4521}}}'
WHSEC = "whsec_" + base64.b64encode(b"the-current-secret-0123456789abc").decode()
OLD_WHSEC = "whsec_" + base64.b64encode(b"the-previous-secret-9876543210xy").decode()
KEY, OLD_KEY = decode_standard_webhooks_secret(WHSEC), decode_standard_webhooks_secret(OLD_WHSEC)
RAW, OLD_RAW = b"whsec_stripe_current", b"whsec_stripe_previous"


def std_headers(key: bytes = KEY, *, body: bytes = BODY, ts: int = NOW, msg_id: str = "msg_2Kp") -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign_standard_webhooks(key, msg_id, ts, body)}


def check(scheme: str, keys: list[bytes], headers: dict[str, str], body: bytes = BODY, now: float = NOW,
          tolerance_s: float = 300) -> Rejection | None:
    return verify(scheme, keys, headers, body, now=now, tolerance_s=tolerance_s)


# --- Standard Webhooks ------------------------------------------------------------------------

def test_standard_valid() -> None:
    assert check("standard_webhooks", [KEY], std_headers()) is None


def test_standard_matches_the_reference_library_both_ways() -> None:
    reference = Webhook(WHSEC)
    signed_by_reference = reference.sign("msg_ref", datetime.fromtimestamp(NOW, tz=UTC), BODY.decode())
    headers = {"webhook-id": "msg_ref", "webhook-timestamp": str(NOW), "webhook-signature": signed_by_reference}
    assert check("standard_webhooks", [KEY], headers) is None
    ours = sign_standard_webhooks(KEY, "msg_ours", NOW, BODY)
    assert ours == reference.sign("msg_ours", datetime.fromtimestamp(NOW, tz=UTC), BODY.decode())


def test_standard_tampered_body() -> None:
    rejection = check("standard_webhooks", [KEY], std_headers(), body=BODY.replace(b"4521", b"4522"))
    assert rejection is not None and rejection.code == BAD_SIGNATURE
    assert rejection.header == "webhook-signature"


def test_standard_tampered_id_or_timestamp() -> None:
    headers = std_headers()
    assert check("standard_webhooks", [KEY], {**headers, "webhook-id": "msg_other"}) is not None
    assert check("standard_webhooks", [KEY], {**headers, "webhook-timestamp": str(NOW + 1)}) is not None


def test_standard_wrong_secret() -> None:
    rejection = check("standard_webhooks", [KEY], std_headers(OLD_KEY))
    assert rejection is not None and rejection.code == BAD_SIGNATURE


def test_standard_rotation_accepts_either_active_secret() -> None:
    assert check("standard_webhooks", [KEY, OLD_KEY], std_headers(OLD_KEY)) is None
    assert check("standard_webhooks", [KEY, OLD_KEY], std_headers(KEY)) is None
    # A sender signing with both (the spec's own rotation) passes with only one of them active.
    both = std_headers(OLD_KEY)
    both["webhook-signature"] += " " + std_headers(KEY)["webhook-signature"]
    assert check("standard_webhooks", [KEY], both) is None


@pytest.mark.parametrize("offset", [-301, 301, -86_400, 10**9])
def test_standard_stale_or_future_timestamp(offset: int) -> None:
    rejection = check("standard_webhooks", [KEY], std_headers(ts=NOW + offset))
    assert rejection is not None and rejection.code == STALE_TIMESTAMP


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_standard_within_tolerance(offset: int) -> None:
    assert check("standard_webhooks", [KEY], std_headers(ts=NOW + offset)) is None


@pytest.mark.parametrize("change", [
    {"webhook-signature": "v1"},
    {"webhook-signature": "v1,"},
    {"webhook-signature": "v1,not base64!!"},
    {"webhook-signature": "v2,AAAA"},
    {"webhook-signature": ""},
    {"webhook-timestamp": "soon"},
    {"webhook-timestamp": "-5"},
    {"webhook-timestamp": "1.5e9"},
    {"webhook-id": ""},
])
def test_standard_malformed_headers(change: dict[str, str]) -> None:
    rejection = check("standard_webhooks", [KEY], {**std_headers(), **change})
    assert rejection is not None and rejection.code == BAD_SIGNATURE


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_standard_missing_header_is_named(missing: str) -> None:
    headers = std_headers()
    del headers[missing]
    rejection = check("standard_webhooks", [KEY], headers)
    assert rejection == Rejection(BAD_SIGNATURE, f"header {missing} is missing", missing)


# --- Stripe -----------------------------------------------------------------------------------

def test_stripe_valid_and_tampered() -> None:
    headers = {"stripe-signature": sign_stripe(RAW, NOW, BODY)}
    assert check("stripe", [RAW], headers) is None
    rejection = check("stripe", [RAW], headers, body=BODY + b" ")
    assert rejection is not None and rejection.code == BAD_SIGNATURE


def test_stripe_wrong_secret_and_rotation() -> None:
    headers = {"stripe-signature": sign_stripe(OLD_RAW, NOW, BODY)}
    assert check("stripe", [RAW], headers) is not None
    assert check("stripe", [RAW, OLD_RAW], headers) is None
    # Stripe sends one v1 per active secret of the endpoint; v0 (test mode) is ignored.
    two = sign_stripe(OLD_RAW, NOW, BODY) + "," + sign_stripe(RAW, NOW, BODY).split(",")[1] + ",v0=abc"
    assert check("stripe", [RAW], {"stripe-signature": two}) is None


@pytest.mark.parametrize("offset", [-301, 301])
def test_stripe_stale_or_future_timestamp(offset: int) -> None:
    rejection = check("stripe", [RAW], {"stripe-signature": sign_stripe(RAW, NOW + offset, BODY)})
    assert rejection is not None and rejection.code == STALE_TIMESTAMP


def test_stripe_tolerance_is_the_sources() -> None:
    headers = {"stripe-signature": sign_stripe(RAW, NOW - 500, BODY)}
    assert check("stripe", [RAW], headers, tolerance_s=600) is None
    assert check("stripe", [RAW], headers, tolerance_s=60) is not None


@pytest.mark.parametrize("header", ["", "t=,v1=", f"t={NOW}", "v1=00ff", f"t=x,v1={'0' * 64}", "garbage",
                                    f"t={NOW},v1=ZZ", f"t={NOW},v1=\u00e9\u00e9"])
def test_stripe_malformed(header: str) -> None:
    rejection = check("stripe", [RAW], {"stripe-signature": header})
    assert rejection is not None and rejection.code == BAD_SIGNATURE


def test_stripe_missing_header() -> None:
    assert check("stripe", [RAW], {}) == Rejection(BAD_SIGNATURE, "header stripe-signature is missing",
                                                   "stripe-signature")


# --- GitHub -----------------------------------------------------------------------------------

def test_github_valid_tampered_wrong_secret_rotation() -> None:
    headers = {"x-hub-signature-256": sign_github(RAW, BODY)}
    assert check("github", [RAW], headers) is None
    assert check("github", [RAW], {"x-hub-signature-256": sign_github(RAW, BODY).upper().replace("SHA256", "sha256")
                                   }) is None  # hex case does not matter
    assert check("github", [RAW], headers, body=b"{}") is not None
    assert check("github", [OLD_RAW], headers) is not None
    assert check("github", [OLD_RAW, RAW], headers) is None


@pytest.mark.parametrize("header", ["", "sha256=", "sha1=abcd", "abcd", "sha256=zz", "sha256=\u00e9"])
def test_github_malformed(header: str) -> None:
    rejection = check("github", [RAW], {"x-hub-signature-256": header})
    assert rejection is not None and rejection.code == BAD_SIGNATURE


def test_none_accepts_anything() -> None:
    assert check("none", [], {}) is None


def test_decode_standard_webhooks_secret() -> None:
    assert decode_standard_webhooks_secret(WHSEC) == b"the-current-secret-0123456789abc"
    assert decode_standard_webhooks_secret(WHSEC.removeprefix("whsec_").rstrip("=")) == KEY  # unpadded, no prefix
    for bad in ("whsec_", "whsec_@@@@", "whsec_a"):
        with pytest.raises(ValueError):
            decode_standard_webhooks_secret(bad)


# --- Any header string: a verdict, never an exception -----------------------------------------

header_text = st.text(st.characters(codec="utf-8"), max_size=120) | st.sampled_from(
    ["v1,", "v1,AAAA", "t=1,v1=00", "sha256=00", str(NOW), "1" * 40, " ", ",,,", "=="])
names = st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature", "stripe-signature",
                         "x-hub-signature-256", "other"])


@settings(max_examples=400, deadline=None)
@given(scheme=st.sampled_from(["standard_webhooks", "stripe", "github", "none"]),
       headers=st.dictionaries(names, header_text, max_size=6), body=st.binary(max_size=200),
       now=st.integers(min_value=0, max_value=2**40))
def test_arbitrary_headers_never_raise(scheme: str, headers: dict[str, str], body: bytes, now: int) -> None:
    result = verify(scheme, [KEY, RAW], headers, body, now=now, tolerance_s=300)
    assert result is None or result.code in (BAD_SIGNATURE, STALE_TIMESTAMP)
    if scheme != "none":
        assert result is not None  # without a real signature nothing verifies


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=500), msg_id=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40))
def test_any_body_and_id_signed_correctly_verifies(body: bytes, msg_id: str) -> None:
    headers = std_headers(body=body, msg_id=msg_id)
    assert check("standard_webhooks", [KEY], headers, body=body) is None

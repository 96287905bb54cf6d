"""The connect flow's pure parts: PKCE, the authorize URL, the callback's verdict, the token answer."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.connections.model import ConnectionsError
from router.connections.oauth_flow import Attempt, authorize_url, callback_verdict, check_use, credentials_from
from router.spec.connection_use import parse_use

USE = parse_use({"credentials": ["oauth2_authorization_code"], "authorize_url": "https://p.example/authorize?x=1",
                 "token_url": "https://p.example/token", "client_id": "cid", "client_secret": "env:S",
                 "scope": "incidents:write"})
ATTEMPT = Attempt("st4te", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "http://127.0.0.1:5000/callback")


def test_the_s256_challenge_is_rfc_7636s() -> None:
    assert ATTEMPT.challenge == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  # RFC 7636 appendix B


def test_the_authorize_url_carries_what_the_partner_needs() -> None:
    url = urlsplit(authorize_url(USE, ATTEMPT, login_hint="acme"))
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert (url.netloc, url.path) == ("p.example", "/authorize")
    assert query == {"x": "1", "response_type": "code", "client_id": "cid", "redirect_uri": ATTEMPT.redirect_uri,
                     "state": "st4te", "code_challenge": ATTEMPT.challenge, "code_challenge_method": "S256",
                     "scope": "incidents:write", "login_hint": "acme"}


def test_a_spec_that_cannot_run_the_flow_is_named() -> None:
    with pytest.raises(ConnectionsError, match="does not take oauth2_authorization_code"):
        check_use(parse_use({"credentials": ["bearer"]}), "pd")
    with pytest.raises(ConnectionsError, match=r"lacks connection\.authorize_url, connection\.client_id"):
        check_use(parse_use({"credentials": ["oauth2_authorization_code"], "token_url": "t", "client_secret": "s"}),
                  "pd")
    assert check_use(USE, "pd") is USE


def test_the_callback_is_ours_only_with_our_state_and_a_code() -> None:
    assert callback_verdict("code=abc&state=st4te", ATTEMPT) == ("abc", None)
    assert "state does not match" in str(callback_verdict("code=abc&state=other", ATTEMPT)[1])
    assert "state does not match" in str(callback_verdict("code=abc", ATTEMPT)[1])
    assert "state does not match" in str(callback_verdict("code=abc&state=st4te&state=st4te", ATTEMPT)[1])
    refused = callback_verdict("error=access_denied&error_description=no&state=st4te", ATTEMPT)
    assert refused == (None, "the partner answered access_denied: no")
    assert callback_verdict("state=st4te", ATTEMPT) == (None, "the callback carries no authorization code")


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=6))
def test_no_callback_without_our_state_gives_a_code(params: dict[str, str]) -> None:
    params.pop("state", None)
    code, why = callback_verdict(urlencode(params), ATTEMPT)
    assert code is None and why


def test_the_token_answer_becomes_credentials() -> None:
    found = credentials_from({"access_token": "a", "refresh_token": "r", "expires_in": 60, "scope": "x y"}, 10.0)
    assert (found.access_token.reveal(), found.refresh_token and found.refresh_token.reveal()) == ("a", "r")
    assert found.expires_at_ms == 70_000 and found.scopes == ("x", "y")
    junks: list[object] = [None, [], {"access_token": ""}, {"access_token": 5}]
    for junk in junks:
        with pytest.raises(ConnectionsError, match="no access_token"):
            credentials_from(junk, 0.0)

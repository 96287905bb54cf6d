"""Hostile input to the simulator's OAuth endpoints, drawn by hypothesis: every request gets a precise
answer (never an exception), the bookkeeping stays consistent, and nothing redirects off loopback."""

from __future__ import annotations

import base64
from urllib.parse import urlencode, urlsplit

from hypothesis import given
from hypothesis import strategies as st

from services.partner_sim.accounts import Accounts
from services.partner_sim.oauth import AuthorizationServer, Issued
from services.partner_sim.oauth_requests import (
    LOOPBACK_HOSTS,
    AuthorizationRequest,
    ConsentAgain,
    ErrorPage,
    Redirect,
    RegisteredClient,
    check_authorization_request,
    decide_consent,
    parse_form,
    revoke_answer,
    token_answer,
)
from tests.unit.test_partner_sim_oauth import CHALLENGE, REDIRECT, VERIFIER, Clock, Tokens

CLIENT = RegisteredClient("sim-client", "sim-secret")
TOKEN_ERRORS = {"invalid_request", "invalid_client", "invalid_grant", "unsupported_grant_type", "invalid_scope"}
NAMES = ("grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope", "client_id",
         "client_secret", "token", "token_type_hint", "response_type", "state", "code_challenge",
         "code_challenge_method", "login_hint", "decision", "account")
WEIRD = st.text(max_size=20) | st.sampled_from(["", " ", "%", "\x00", "é", "a\r\nb", "%FF", "+", "&", "="])


def seeded() -> tuple[AuthorizationServer, dict[str, str]]:
    """A server with one grant and one pending code, and the values a fuzzer should sometimes hit."""
    clock = Clock()
    oauth = AuthorizationServer(Tokens(clock), clock)
    code = oauth.issue_code("sim-client", REDIRECT, CHALLENGE, "acme", "deliver")
    issued = oauth.redeem(code, "sim-client", REDIRECT, VERIFIER)
    assert isinstance(issued, Issued)
    pending = oauth.issue_code("sim-client", REDIRECT, CHALLENGE, "acme", "deliver")
    return oauth, {"code": pending, "spent_code": code, "refresh": issued.refresh_token,
                   "access": issued.access_token}


def values(known: dict[str, str]) -> st.SearchStrategy[str]:
    meaningful = ["sim-client", "sim-secret", "authorization_code", "refresh_token", "client_credentials",
                  "access_token", REDIRECT, VERIFIER, CHALLENGE, "S256", "code", "allow", "deny", "acme",
                  *known.values()]
    return st.sampled_from(meaningful) | WEIRD


@st.composite
def forms(draw: st.DrawFn, known: dict[str, str]) -> bytes:
    """A urlencoded form of likely names with likely, weird or repeated values; sometimes mangled bytes."""
    fields = draw(st.lists(st.tuples(st.sampled_from(NAMES) | st.text(max_size=5), values(known)), max_size=12))
    body = urlencode(fields).encode()
    if draw(st.booleans()):
        return body
    return draw(st.sampled_from([body + b"&%", body + b"\xff", body.replace(b"%", b"%Z"), body + b"&a=%C3"]))


def authorization() -> st.SearchStrategy[str]:
    basic = st.tuples(WEIRD | st.just("sim-client"), WEIRD | st.just("sim-secret")).map(
        lambda pair: "Basic " + base64.b64encode(f"{pair[0]}:{pair[1]}".encode()).decode())
    return st.just("") | basic | st.text(max_size=30) | st.sampled_from(["Basic", "Basic !!", "Basic w6k=", "Bearer x"])


def consistent(oauth: AuthorizationServer) -> None:
    for index in (oauth.by_refresh, oauth.by_rotated, oauth.by_access):
        assert set(index.values()) <= set(oauth.grants)
    for grant in oauth.grants.values():
        assert oauth.by_refresh[grant.refresh_token] == grant.id


KNOWN = seeded()[1]


@given(st.data())
def test_the_token_endpoint_answers_any_form_precisely(data: st.DataObject) -> None:
    oauth, known = seeded()
    for _ in range(data.draw(st.integers(1, 4))):
        body = data.draw(forms(known) | st.binary(max_size=64))
        content_type = data.draw(st.sampled_from(["application/x-www-form-urlencoded", "", "text/plain"])
                                 | st.text(max_size=20))
        answered = token_answer(oauth, CLIENT, 600, content_type, data.draw(authorization()), body)
        assert answered.status in (200, 400, 401), answered
        if answered.status == 200:
            assert answered.body["token_type"] == "Bearer"
        else:
            assert answered.body["error"] in TOKEN_ERRORS and answered.body["error_description"]
            assert (answered.status == 401) is (answered.body["error"] == "invalid_client")
        consistent(oauth)


@given(forms(KNOWN) | st.binary(max_size=64), authorization())
def test_the_revocation_endpoint_answers_any_form_precisely(body: bytes, authorization: str) -> None:
    oauth, _ = seeded()
    answered = revoke_answer(oauth, CLIENT, "application/x-www-form-urlencoded", authorization, body)
    assert answered.status in (200, 400, 401)
    assert answered.status == 200 or answered.body["error"] in {"invalid_request", "invalid_client"}
    consistent(oauth)


@given(forms(KNOWN) | st.binary(max_size=64), st.booleans())
def test_the_authorization_endpoint_never_redirects_off_loopback(body: bytes, enforced: bool) -> None:
    oauth, _ = seeded()
    form = parse_form(body)
    if isinstance(form, str):
        return
    accounts = Accounts.of({"acme": "key-a"}) if enforced else Accounts()
    for answered in (check_authorization_request(form, CLIENT), decide_consent(oauth, form, CLIENT, accounts)):
        assert isinstance(answered, AuthorizationRequest | ErrorPage | Redirect | ConsentAgain)
        if isinstance(answered, Redirect):
            target = urlsplit(answered.location)
            assert target.scheme == "http" and target.hostname in LOOPBACK_HOSTS, answered
        if isinstance(answered, ErrorPage):
            assert answered.status == 400 and answered.message

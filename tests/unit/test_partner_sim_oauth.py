"""The simulator's OAuth authorization server as plain data: PKCE, codes, grants, rotation, revocation,
and the checks of authorization, token and revocation requests; no server."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import pytest

from services.partner_sim.accounts import Accounts
from services.partner_sim.oauth import (
    CODE_TTL_S,
    SPENT_CODE_MEMORY_S,
    AuthorizationServer,
    Issued,
    Refusal,
    pkce_matches,
    s256,
)
from services.partner_sim.oauth_requests import (
    MAX_FORM_BYTES,
    AuthorizationRequest,
    ConsentAgain,
    ErrorPage,
    Redirect,
    RegisteredClient,
    check_authorization_request,
    decide_consent,
    parse_form,
    redirect_uri_problem,
    revoke_answer,
    token_answer,
    with_query,
)

# RFC 7636 Appendix B
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
CLIENT = RegisteredClient("sim-client", "sim-secret")
REDIRECT = "http://127.0.0.1:8765/callback"
FORM = "application/x-www-form-urlencoded"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Tokens:
    """The AccessTokens a PartnerSim provides, with a TTL on the same clock."""

    def __init__(self, clock: Clock, ttl: float = 3600.0) -> None:
        self.clock, self.ttl = clock, ttl
        self.expiry: dict[str, float] = {}

    def issue_token(self) -> str:
        token = f"at-{len(self.expiry)}"
        self.expiry[token] = self.clock() + self.ttl
        return token

    def token_valid(self, token: str) -> bool:
        return token in self.expiry and self.clock() < self.expiry[token]

    def revoke(self, token: str | None) -> None:
        if token is not None:
            self.expiry.pop(token, None)


def server(ttl: float = 3600.0) -> tuple[AuthorizationServer, Tokens, Clock]:
    clock = Clock()
    tokens = Tokens(clock, ttl)
    return AuthorizationServer(tokens, clock), tokens, clock


def connect(oauth: AuthorizationServer, account: str = "acme", scope: str = "deliver") -> Issued:
    code = oauth.issue_code("sim-client", REDIRECT, CHALLENGE, account, scope)
    issued = oauth.redeem(code, "sim-client", REDIRECT, VERIFIER)
    assert isinstance(issued, Issued), issued
    return issued


# -- PKCE --------------------------------------------------------------------------------------


def test_s256_is_rfc_7636_appendix_b() -> None:
    assert s256(VERIFIER) == CHALLENGE
    assert pkce_matches(VERIFIER, CHALLENGE)


@pytest.mark.parametrize("verifier", [
    VERIFIER[:-1] + "j",  # another verifier
    "short",  # under 43 characters
    "a" * 129,  # over 128
    VERIFIER[:42] + "/",  # '/' is not unreserved
    VERIFIER + "é",
    "",
])
def test_pkce_refuses_wrong_and_malformed_verifiers(verifier: str) -> None:
    assert not pkce_matches(verifier, CHALLENGE)


def test_pkce_refuses_a_malformed_challenge_without_raising() -> None:
    assert not pkce_matches(VERIFIER, "é" * 43) and not pkce_matches(VERIFIER, "")


# -- codes and grants --------------------------------------------------------------------------


def test_a_code_is_exchanged_once_for_tokens_of_its_account() -> None:
    oauth, tokens, _ = server()
    issued = connect(oauth, "globex", "deliver read")
    assert (issued.account, issued.scope) == ("globex", "deliver read")
    assert tokens.token_valid(issued.access_token) and oauth.account_of(issued.access_token) == "globex"
    assert oauth.account_of("at-unknown") is None and oauth.account_of(None) is None


def test_reusing_a_code_is_refused_and_revokes_what_it_made() -> None:
    oauth, tokens, _ = server()
    code = oauth.issue_code("sim-client", REDIRECT, CHALLENGE, "acme", "")
    issued = oauth.redeem(code, "sim-client", REDIRECT, VERIFIER)
    assert isinstance(issued, Issued)
    again = oauth.redeem(code, "sim-client", REDIRECT, VERIFIER)
    assert isinstance(again, Refusal) and again.error == "invalid_grant" and "already used" in again.description
    assert not tokens.token_valid(issued.access_token) and oauth.account_of(issued.access_token) is None
    assert isinstance(oauth.refresh(issued.refresh_token, "sim-client", None), Refusal)


@pytest.mark.parametrize(("client_id", "redirect_uri", "verifier", "why"), [
    ("other", REDIRECT, VERIFIER, "another client"),
    ("sim-client", REDIRECT + "/x", VERIFIER, "redirect_uri differs"),
    ("sim-client", REDIRECT, "x" * 43, "code_verifier does not match"),
])
def test_a_wrong_exchange_is_invalid_grant_and_spends_the_code(
    client_id: str, redirect_uri: str, verifier: str, why: str
) -> None:
    oauth, _, _ = server()
    code = oauth.issue_code("sim-client", REDIRECT, CHALLENGE, "acme", "")
    refused = oauth.redeem(code, client_id, redirect_uri, verifier)
    assert isinstance(refused, Refusal) and refused.error == "invalid_grant" and why in refused.description
    # Spent: the right verifier no longer helps, so guessing it by retrying is useless.
    assert isinstance(oauth.redeem(code, "sim-client", REDIRECT, VERIFIER), Refusal)
    assert oauth.grants == {}


def test_codes_expire_after_60_seconds_and_are_forgotten() -> None:
    oauth, _, clock = server()
    late = oauth.issue_code("sim-client", REDIRECT, CHALLENGE, "acme", "")
    clock.now += CODE_TTL_S
    refused = oauth.redeem(late, "sim-client", REDIRECT, VERIFIER)
    assert isinstance(refused, Refusal) and refused.error == "invalid_grant"
    assert oauth.codes == {}
    clock.now += CODE_TTL_S - 1
    in_time = oauth.issue_code("sim-client", REDIRECT, CHALLENGE, "acme", "")
    clock.now += CODE_TTL_S - 1
    assert isinstance(oauth.redeem(in_time, "sim-client", REDIRECT, VERIFIER), Issued)
    clock.now += SPENT_CODE_MEMORY_S
    oauth.issue_code("sim-client", REDIRECT, CHALLENGE, "acme", "")
    assert list(oauth.spent) == [] and len(oauth.codes) == 1


def test_refresh_rotates_and_a_rotated_token_revokes_the_grant() -> None:
    oauth, tokens, _ = server()
    first = connect(oauth)
    second = oauth.refresh(first.refresh_token, "sim-client", None)
    assert isinstance(second, Issued) and second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token and second.scope == "deliver"
    assert tokens.token_valid(first.access_token)  # an access token lives out its TTL
    reused = oauth.refresh(first.refresh_token, "sim-client", None)
    assert isinstance(reused, Refusal) and reused.error == "invalid_grant" and "rotated" in reused.description
    # The whole grant is gone: the current refresh token and every access token.
    assert isinstance(oauth.refresh(second.refresh_token, "sim-client", None), Refusal)
    assert not tokens.token_valid(first.access_token) and not tokens.token_valid(second.access_token)
    assert oauth.grants == {} and oauth.by_refresh == {} and oauth.by_rotated == {} and oauth.by_access == {}


def test_refresh_checks_client_and_scope() -> None:
    oauth, _, _ = server()
    issued = connect(oauth, scope="deliver read")
    other = oauth.refresh(issued.refresh_token, "other", None)
    assert isinstance(other, Refusal) and other.error == "invalid_grant"
    wider = oauth.refresh(issued.refresh_token, "sim-client", "deliver admin")
    assert isinstance(wider, Refusal) and wider.error == "invalid_scope"
    narrower = oauth.refresh(issued.refresh_token, "sim-client", "read")
    assert isinstance(narrower, Issued) and narrower.scope == "read"
    again = oauth.refresh(narrower.refresh_token, "sim-client", None)
    assert isinstance(again, Issued) and again.scope == "deliver read"  # the grant keeps its scope
    unknown = oauth.refresh("nope", "sim-client", None)
    assert isinstance(unknown, Refusal) and unknown.error == "invalid_grant"


def test_refresh_forgets_the_grants_expired_access_tokens() -> None:
    oauth, _, clock = server(ttl=10)
    issued = connect(oauth)
    for _ in range(5):
        clock.now += 11
        refreshed = oauth.refresh(issued.refresh_token, "sim-client", None)
        assert isinstance(refreshed, Issued)
        issued = refreshed
    assert oauth.grants[1].access_tokens == [issued.access_token] and list(oauth.by_access) == [issued.access_token]


def test_revoke_token_ends_an_access_token_or_a_refresh_tokens_grant() -> None:
    oauth, tokens, _ = server()
    one, two = connect(oauth, "acme"), connect(oauth, "globex")
    assert oauth.revoke_token(one.access_token, "refresh_token")  # a wrong hint only orders the search
    assert not tokens.token_valid(one.access_token)
    assert isinstance(oauth.refresh(one.refresh_token, "sim-client", None), Issued)  # the grant stays
    assert oauth.revoke_token(two.refresh_token, None)
    assert not tokens.token_valid(two.access_token) and oauth.account_of(two.access_token) is None
    assert not oauth.revoke_token("unknown", "access_token") and not oauth.revoke_token(two.refresh_token, None)
    client_credentials = tokens.issue_token()
    assert oauth.revoke_token(client_credentials, "access_token") and not tokens.token_valid(client_credentials)
    assert oauth.revocations == 3


def test_revoke_account_ends_every_grant_of_that_account_only() -> None:
    oauth, tokens, _ = server()
    a1, a2, g = connect(oauth, "acme"), connect(oauth, "acme"), connect(oauth, "globex")
    assert oauth.revoke_account("acme") == 2 and oauth.revoke_account("acme") == 0
    for issued in (a1, a2):
        assert not tokens.token_valid(issued.access_token)
        refused = oauth.refresh(issued.refresh_token, "sim-client", None)
        assert isinstance(refused, Refusal) and refused.error == "invalid_grant"
    assert oauth.account_of(g.access_token) == "globex"
    assert oauth.revocations == 0  # counts /oauth/revoke requests, not the partner's own revocations


# -- forms and redirect URIs --------------------------------------------------------------------


def test_parse_form() -> None:
    assert parse_form(b"a=1&b=x+y&b=%C3%A9&c=") == {"a": ["1"], "b": ["x y", "é"], "c": [""]}
    assert parse_form("") == {}
    assert parse_form(b"a=%FF") == "the form must be ASCII, with other characters percent-encoded as UTF-8"
    assert parse_form("a=é") == "the form must be ASCII, with other characters percent-encoded as UTF-8"
    assert parse_form(b"&".join(b"f%d=1" % i for i in range(101))) == "the form has more than 100 fields"
    assert parse_form(b"a=" + b"x" * MAX_FORM_BYTES) == f"the form is larger than {MAX_FORM_BYTES} bytes"


@pytest.mark.parametrize(("uri", "problem"), [
    ("http://127.0.0.1:8765/cb", None),
    ("http://localhost:1/cb?tenant=acme", None),
    ("http://[::1]:9/", None),
    ("http://127.0.0.1/cb", None),
    ("https://127.0.0.1:8765/cb", "must be http://127.0.0.1:PORT"),
    ("http://example.com/cb", "must be http://127.0.0.1:PORT"),
    ("http://127.0.0.1.evil.example/cb", "must be http://127.0.0.1:PORT"),
    ("http://localhost@evil.example/cb", "must be http://127.0.0.1:PORT"),
    ("http://user@localhost:1/cb", "must be http://127.0.0.1:PORT"),
    ("javascript:alert(1)", "must be http://127.0.0.1:PORT"),
    ("/cb", "must be http://127.0.0.1:PORT"),
    ("http://127.0.0.1:99999/cb", "is not a URI"),
    ("http://[::1/cb", "is not a URI"),
    ("http://127.0.0.1:1/cb#frag", "must not have a fragment"),
    ("http://127.0.0.1:1/c b", "must not contain spaces"),
])
def test_redirect_uris_are_loopback_http_only(uri: str, problem: str | None) -> None:
    found = redirect_uri_problem(uri)
    assert found is None if problem is None else (found is not None and problem in found), found


def test_with_query_keeps_the_redirect_uris_own_query() -> None:
    assert with_query("http://localhost:1/cb?t=a", {"code": "c d", "state": None}) == "http://localhost:1/cb?t=a&code=c%20d"


# -- the authorization request -------------------------------------------------------------------


def authorize(**changes: str | list[str] | None) -> dict[str, list[str]]:
    params: dict[str, str | list[str] | None] = {
        "response_type": "code", "client_id": "sim-client", "redirect_uri": REDIRECT, "state": "xyz",
        "code_challenge": CHALLENGE, "code_challenge_method": "S256", "scope": "deliver", **changes}
    return {k: v if isinstance(v, list) else [v] for k, v in params.items() if v is not None}


def query(location: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(location).query)


def test_a_good_authorization_request_is_shown() -> None:
    checked = check_authorization_request(authorize(login_hint="acme"), CLIENT)
    assert checked == AuthorizationRequest("sim-client", REDIRECT, "xyz", CHALLENGE, "deliver", "acme")
    hostile_hint = check_authorization_request(authorize(login_hint="<script>"), CLIENT)
    assert isinstance(hostile_hint, AuthorizationRequest) and hostile_hint.login_hint == ""


@pytest.mark.parametrize(("changes", "message"), [
    ({"client_id": None}, "unknown client_id"),
    ({"client_id": "other"}, "unknown client_id"),
    ({"client_id": ["sim-client", "sim-client"]}, "client_id is given more than once"),
    ({"redirect_uri": None}, "redirect_uri is missing"),
    ({"redirect_uri": "https://evil.example/cb"}, "redirect_uri must be http://127.0.0.1:PORT"),
    ({"redirect_uri": [REDIRECT, "http://localhost:2/"]}, "redirect_uri is given more than once"),
    ({"redirect_uri": REDIRECT + "\n"}, "redirect_uri must be at most 2048 printable ASCII characters"),
])
def test_an_untrusted_client_or_redirect_uri_gets_a_page_never_a_redirect(
    changes: dict[str, str | list[str] | None], message: str
) -> None:
    page = check_authorization_request(authorize(**changes), CLIENT)
    assert isinstance(page, ErrorPage) and page.status == 400 and message in page.message, page


@pytest.mark.parametrize(("changes", "error", "description"), [
    ({"response_type": None}, "invalid_request", "response_type is missing"),
    ({"response_type": "token"}, "unsupported_response_type", "only response_type=code"),
    ({"code_challenge": None}, "invalid_request", "code_challenge is required"),
    ({"code_challenge_method": None}, "invalid_request", "code_challenge_method must be S256"),
    ({"code_challenge_method": "plain"}, "invalid_request", "code_challenge_method must be S256"),
    ({"code_challenge": "short"}, "invalid_request", "code_challenge must be 43 base64url"),
    ({"scope": ["a", "b"]}, "invalid_request", "scope is given more than once"),
    ({"scope": "a  b"}, "invalid_scope", "scope must be space-separated"),
])
def test_a_bad_request_from_a_known_client_is_redirected_with_the_error_and_state(
    changes: dict[str, str | list[str] | None], error: str, description: str
) -> None:
    answered = check_authorization_request(authorize(**changes), CLIENT)
    assert isinstance(answered, Redirect), answered
    assert answered.location.startswith(REDIRECT + "?")
    params = query(answered.location)
    assert params["error"] == [error] and description in params["error_description"][0]
    assert params["state"] == ["xyz"]


def test_an_unusable_state_is_not_echoed() -> None:
    answered = check_authorization_request(authorize(state=["a", "b"]), CLIENT)
    assert isinstance(answered, Redirect)
    assert query(answered.location) == {"error": ["invalid_request"],
                                        "error_description": ["state is given more than once"]}


def test_consent_allow_deny_and_account_checks() -> None:
    oauth, _, _ = server()
    accounts = Accounts.of({"acme": "key-a"})
    allowed = decide_consent(oauth, {**authorize(), "decision": ["allow"], "account": ["acme"]}, CLIENT, accounts)
    assert isinstance(allowed, Redirect)
    params = query(allowed.location)
    assert params["state"] == ["xyz"] and oauth.codes[params["code"][0]].account == "acme"
    denied = decide_consent(oauth, {**authorize(), "decision": ["deny"]}, CLIENT, accounts)
    assert isinstance(denied, Redirect) and query(denied.location)["error"] == ["access_denied"]
    assert query(denied.location)["state"] == ["xyz"]
    unknown = decide_consent(oauth, {**authorize(), "decision": ["allow"], "account": ["globex"]}, CLIENT, accounts)
    assert isinstance(unknown, ConsentAgain) and unknown.message == "there is no account 'globex'"
    bad = decide_consent(oauth, {**authorize(), "decision": ["allow"], "account": ["a b"]}, CLIENT, Accounts())
    assert isinstance(bad, ConsentAgain) and bad.account == "a b" and "account must be" in bad.message
    assert decide_consent(oauth, {**authorize(), "decision": ["maybe"]}, CLIENT, accounts) == ErrorPage(
        400, "decision must be allow or deny")
    tampered = decide_consent(oauth, {**authorize(redirect_uri="http://evil.example/"), "decision": ["allow"],
                                      "account": ["acme"]}, CLIENT, accounts)
    assert isinstance(tampered, ErrorPage)
    assert len(oauth.codes) == 1


# -- the token and revocation endpoints ------------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_token_answers_each_grant_and_rfc_6749_errors() -> None:
    oauth, _, _ = server()
    code = oauth.issue_code("sim-client", REDIRECT, CHALLENGE, "acme", "deliver")
    form = f"grant_type=authorization_code&code={code}&redirect_uri={REDIRECT}&code_verifier={VERIFIER}".encode()
    answered = token_answer(oauth, CLIENT, 599.5, FORM, basic("sim-client", "sim-secret"), form)
    assert answered.status == 200 and answered.headers["Cache-Control"] == "no-store"
    assert set(answered.body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert answered.body["expires_in"] == 600 and answered.body["token_type"] == "Bearer"
    refresh = f"grant_type=refresh_token&refresh_token={answered.body['refresh_token']}".encode()
    creds = b"&client_id=sim-client&client_secret=sim-secret"
    rotated = token_answer(oauth, CLIENT, 600, FORM + "; charset=utf-8", "", refresh + creds)
    assert rotated.status == 200 and rotated.body["refresh_token"] != answered.body["refresh_token"]
    assert token_answer(oauth, CLIENT, 600, FORM, "", refresh + creds).body["error"] == "invalid_grant"
    client_credentials = token_answer(oauth, CLIENT, 600, "", "", b"grant_type=client_credentials" + creds)
    assert client_credentials.status == 200 and set(client_credentials.body) == {"access_token", "token_type",
                                                                                 "expires_in"}


@pytest.mark.parametrize(("content_type", "authorization", "body", "status", "error", "description"), [
    ("application/json", "", b'{"grant_type": "client_credentials"}', 400, "invalid_request", "x-www-form-urlencoded"),
    ("multipart/form-data; boundary=x", "", b"--x--", 400, "invalid_request", "x-www-form-urlencoded"),
    (FORM, "", b"grant_type=refresh_token&client_id=sim-client&client_secret=nope", 401, "invalid_client", ""),
    (FORM, basic("sim-client", "nope"), b"grant_type=client_credentials", 401, "invalid_client", ""),
    (FORM, "Basic !!", b"grant_type=client_credentials", 401, "invalid_client", ""),
    (FORM, "", b"grant_type=x&client_id=sim-client&client_id=sim-client&client_secret=sim-secret", 400,
     "invalid_request", "client_id and client_secret must each be given once"),
    (FORM, basic("sim-client", "sim-secret"), b"grant_type=password", 400, "unsupported_grant_type", ""),
    (FORM, basic("sim-client", "sim-secret"), b"", 400, "invalid_request", "grant_type is missing"),
    (FORM, basic("sim-client", "sim-secret"), b"grant_type=a&grant_type=b", 400, "invalid_request", "more than once"),
    (FORM, basic("sim-client", "sim-secret"), b"grant_type=authorization_code&code=c&redirect_uri=u", 400,
     "invalid_request", "code_verifier is missing"),
    (FORM, basic("sim-client", "sim-secret"), b"grant_type=refresh_token", 400, "invalid_request",
     "refresh_token is missing"),
    (FORM, basic("sim-client", "sim-secret"), b"grant_type=refresh_token&refresh_token=r&scope=%22", 400,
     "invalid_scope", ""),
    (FORM, basic("sim-client", "sim-secret"), b"grant_type=refresh_token&refresh_token=%00", 400,
     "invalid_request", "printable"),
    (FORM, basic("sim-client", "sim-secret"), b"grant_type=refresh_token&refresh_token=nope", 400,
     "invalid_grant", "unknown"),
])
def test_bad_token_requests_get_precise_errors(
    content_type: str, authorization: str, body: bytes, status: int, error: str, description: str
) -> None:
    oauth, _, _ = server()
    answered = token_answer(oauth, CLIENT, 600, content_type, authorization, body)
    assert (answered.status, answered.body["error"]) == (status, error), answered
    assert description in answered.body["error_description"]
    assert ("WWW-Authenticate" in answered.headers) is (status == 401 and authorization.startswith("Basic"))


def test_revoke_answers() -> None:
    oauth, _, _ = server()
    issued = connect(oauth)
    creds = "client_id=sim-client&client_secret=sim-secret&"
    assert revoke_answer(oauth, CLIENT, FORM, "", f"{creds}token=unknown".encode()).status == 200
    assert revoke_answer(oauth, CLIENT, FORM, "", f"{creds}token={issued.refresh_token}"
                                                  "&token_type_hint=whatever".encode()).status == 200
    assert oauth.grants == {} and oauth.revocations == 1
    assert revoke_answer(oauth, CLIENT, FORM, "", creds.encode()).body["error"] == "invalid_request"
    assert revoke_answer(oauth, CLIENT, FORM, "", b"token=x").status == 401
    assert revoke_answer(oauth, CLIENT, "text/plain", "", b"token=x").body["error"] == "invalid_request"

"""The OAuth endpoints' requests checked and answered, as plain functions (no aiohttp).

Every request to ``/oauth/authorize``, ``/oauth/token`` and ``/oauth/revoke`` is hostile until
checked: each parameter at most once (RFC 6749 §3.1, §3.2), in its RFC syntax, the body a
bounded ``application/x-www-form-urlencoded`` form of percent-encoded UTF-8. What is wrong is
answered precisely: an HTML page (authorize, when the client or its redirect URI cannot be
trusted: RFC 6749 §4.1.2.1 forbids redirecting then), an error redirect (authorize, otherwise),
or an RFC 6749 §5.2 JSON error (token, revoke). Nothing here raises for bad input.

Redirect URIs are not registered: any ``http`` URI on a loopback host is accepted (this is a
test double; RFC 8252 §7.3 loopback redirects, with any port).
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from services.partner_sim.accounts import Accounts, basic_credentials, is_account_name
from services.partner_sim.oauth import CHALLENGE_PATTERN, AuthorizationServer, Issued, Refusal

MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 100
MAX_PARAM_CHARS = 2048
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
FORM_CONTENT_TYPES = ("", "application/x-www-form-urlencoded")
_VSCHARS = re.compile(r"[\x20-\x7e]*")  # RFC 6749 Appendix A: client_id, state, code, tokens
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*")  # RFC 6749 §3.3
Form = Mapping[str, list[str]]
NOT_PERCENT_ENCODED = "the form must be ASCII, with other characters percent-encoded as UTF-8"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(frozen=True)
class RegisteredClient:
    """The one client the simulator knows: ``--client-id`` / ``--client-secret``."""

    client_id: str
    client_secret: str = field(repr=False)


def parse_form(raw: bytes | str) -> dict[str, list[str]] | str:
    """Name -> values of a urlencoded form or query string, or what is wrong with it."""
    if len(raw) > MAX_FORM_BYTES:
        return f"the form is larger than {MAX_FORM_BYTES} bytes"
    text = raw if isinstance(raw, str) else raw.decode("ascii", "replace")
    if not text.isascii():
        return NOT_PERCENT_ENCODED
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict",
                          max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError:  # percent-encoded bytes that are not UTF-8
        return NOT_PERCENT_ENCODED
    except ValueError:
        return f"the form has more than {MAX_FORM_FIELDS} fields"
    form: dict[str, list[str]] = {}
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    return form


def single(form: Form, name: str) -> str | Refusal | None:
    """The parameter's one value, None if absent, a Refusal if it is repeated or not one printable line."""
    values = form.get(name, [])
    if len(values) > 1:
        return Refusal("invalid_request", f"{name} is given more than once")
    if not values:
        return None
    if len(values[0]) > MAX_PARAM_CHARS or _VSCHARS.fullmatch(values[0]) is None:
        return Refusal("invalid_request", f"{name} must be at most {MAX_PARAM_CHARS} printable ASCII characters")
    return values[0]


def singles(form: Form, *names: str) -> dict[str, str] | Refusal:
    """The given parameters' values (absent ones left out), or the refusal of the first bad one."""
    found: dict[str, str] = {}
    for name in names:
        value = single(form, name)
        if isinstance(value, Refusal):
            return value
        if value is not None:
            found[name] = value
    return found


def redirect_uri_problem(uri: str) -> str | None:
    """Why ``uri`` is not an acceptable redirect URI (an ``http`` loopback URI, no fragment), or None."""
    if " " in uri:
        return "redirect_uri must not contain spaces"
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return "redirect_uri is not a URI"
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS or parts.username is not None:
        return "redirect_uri must be http://127.0.0.1:PORT/..., http://localhost:PORT/... or http://[::1]:PORT/..."
    if "#" in uri:
        return "redirect_uri must not have a fragment"
    return None


def with_query(uri: str, params: Mapping[str, str | None]) -> str:
    """``uri`` with ``params`` added to its query (its own query kept: RFC 6749 §3.1.2); None values left out."""
    extra = urlencode({k: v for k, v in params.items() if v is not None}, quote_via=quote)
    parts = urlsplit(uri)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return parts._replace(query=query).geturl()


# -- /oauth/authorize ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthorizationRequest:
    """A checked authorization request: what the consent page shows and posts back."""

    client_id: str
    redirect_uri: str
    state: str | None
    code_challenge: str
    scope: str
    login_hint: str  # the account field's default; "" unless an account name was hinted


@dataclass(frozen=True)
class ErrorPage:
    """Answer with a small HTML page, never a redirect: the client or its redirect URI is not trusted."""

    status: int
    message: str


@dataclass(frozen=True)
class Redirect:
    """Answer ``302 Location: location``: a code, or an error for the client (RFC 6749 §4.1.2)."""

    location: str


@dataclass(frozen=True)
class ConsentAgain:
    """Show the consent page again, 400, saying what was wrong with the choice."""

    request: AuthorizationRequest
    account: str
    message: str


def check_authorization_request(form: Form, client: RegisteredClient) -> AuthorizationRequest | ErrorPage | Redirect:
    """RFC 6749 §4.1.1 with RFC 7636 §4.3: a request to show the consent page for, or the answer."""
    client_id = single(form, "client_id")
    if isinstance(client_id, Refusal):
        return ErrorPage(400, client_id.description)
    if client_id is None or not hmac.compare_digest(client_id.encode(), client.client_id.encode()):
        return ErrorPage(400, "unknown client_id")
    redirect_uri = single(form, "redirect_uri")
    if not isinstance(redirect_uri, str):
        return ErrorPage(400, "redirect_uri is missing" if redirect_uri is None else redirect_uri.description)
    problem = redirect_uri_problem(redirect_uri)
    if problem is not None:
        return ErrorPage(400, problem)
    state = single(form, "state")
    if isinstance(state, Refusal):  # no state to echo: the one given is not usable
        return Redirect(with_query(redirect_uri, {"error": "invalid_request", "error_description": state.description}))

    def refused(error: str, description: str) -> Redirect:
        params = {"error": error, "error_description": description, "state": state}
        return Redirect(with_query(redirect_uri, params))

    params = singles(form, "response_type", "code_challenge_method", "code_challenge", "scope", "login_hint")
    if isinstance(params, Refusal):
        return refused(params.error, params.description)
    response_type, method, challenge = (params.get(n) for n in ("response_type", "code_challenge_method",
                                                                "code_challenge"))
    scope, hint = params.get("scope", ""), params.get("login_hint", "")
    if response_type is None:
        return refused("invalid_request", "response_type is missing")
    if response_type != "code":
        return refused("unsupported_response_type", "only response_type=code is supported")
    if challenge is None:
        return refused("invalid_request", "code_challenge is required (PKCE, RFC 7636)")
    if method != "S256":
        return refused("invalid_request", "code_challenge_method must be S256")
    if CHALLENGE_PATTERN.fullmatch(challenge) is None:
        return refused("invalid_request", "code_challenge must be 43 base64url characters (S256)")
    if scope and _SCOPE.fullmatch(scope) is None:
        return refused("invalid_scope", "scope must be space-separated scope tokens")
    return AuthorizationRequest(client_id, redirect_uri, state, challenge, scope, hint if is_account_name(hint) else "")


def decide_consent(
    server: AuthorizationServer, form: Form, client: RegisteredClient, accounts: Accounts
) -> Redirect | ErrorPage | ConsentAgain:
    """The consent page's POST: Allow issues a code for the chosen account, Deny refuses."""
    checked = check_authorization_request(form, client)
    if not isinstance(checked, AuthorizationRequest):
        return checked
    decision, account = single(form, "decision"), single(form, "account")
    if decision == "deny":
        return Redirect(with_query(checked.redirect_uri, {
            "error": "access_denied", "error_description": "the user denied access", "state": checked.state}))
    if decision != "allow":
        return ErrorPage(400, "decision must be allow or deny")
    chosen = account if isinstance(account, str) else ""
    if not is_account_name(chosen):
        return ConsentAgain(checked, chosen, "the account must be 1-128 letters, digits, '.', '_' or '-', "
                                             "starting with a letter or digit")
    if accounts.enforced and chosen not in accounts.credentials:
        return ConsentAgain(checked, chosen, f"there is no account {chosen!r}")
    code = server.issue_code(checked.client_id, checked.redirect_uri, checked.code_challenge, chosen, checked.scope)
    return Redirect(with_query(checked.redirect_uri, {"code": code, "state": checked.state}))


# -- /oauth/token and /oauth/revoke --------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A JSON answer: status, body, headers."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


def error_answer(refusal: Refusal, *, basic_used: bool = False) -> Answer:
    """RFC 6749 §5.2: 401 for ``invalid_client`` (with a challenge if Basic was tried), else 400."""
    body = {"error": refusal.error, "error_description": refusal.description}
    if refusal.error != "invalid_client":
        return Answer(400, body, NO_STORE)
    headers = {**NO_STORE, "WWW-Authenticate": 'Basic realm="partner-sim"'} if basic_used else NO_STORE
    return Answer(401, body, headers)


def read_form(content_type: str, body: bytes) -> Form | Refusal:
    """A token or revocation request's form, or an ``invalid_request`` refusal saying why not."""
    if content_type.partition(";")[0].strip().lower() not in FORM_CONTENT_TYPES:  # parameters (charset) aside
        return Refusal("invalid_request", "the body must be application/x-www-form-urlencoded")
    form = parse_form(body)
    return Refusal("invalid_request", form) if isinstance(form, str) else form


def client_refusal(form: Form, authorization: str, client: RegisteredClient) -> Refusal | None:
    """None if the request authenticates as the client: HTTP Basic if sent, else the form's fields."""
    basic = basic_credentials(authorization)
    if basic is None:
        client_id, client_secret = single(form, "client_id"), single(form, "client_secret")
        if isinstance(client_id, Refusal) or isinstance(client_secret, Refusal):
            return Refusal("invalid_request", "client_id and client_secret must each be given once")
        basic = (client_id or "", client_secret or "")
    same_id = hmac.compare_digest(basic[0].encode(), client.client_id.encode())
    same_secret = hmac.compare_digest(basic[1].encode(), client.client_secret.encode())
    return None if same_id and same_secret else Refusal("invalid_client", "unknown client or wrong secret")


def _issued(issued: Issued, ttl_s: float) -> Answer:
    body = {"access_token": issued.access_token, "token_type": "Bearer", "expires_in": math.ceil(ttl_s),
            "refresh_token": issued.refresh_token, "scope": issued.scope}
    return Answer(200, body, NO_STORE)


def token_answer(
    server: AuthorizationServer, client: RegisteredClient, ttl_s: float, content_type: str, authorization: str,
    body: bytes,
) -> Answer:
    """``POST /oauth/token``: client credentials, authorization code (with PKCE) or refresh token."""
    form = read_form(content_type, body)
    if isinstance(form, Refusal):
        return error_answer(form)
    refusal = client_refusal(form, authorization, client)
    if refusal is not None:
        return error_answer(refusal, basic_used=basic_credentials(authorization) is not None)
    grant_type = single(form, "grant_type")
    if isinstance(grant_type, Refusal):
        return error_answer(grant_type)
    if grant_type is None:
        return error_answer(Refusal("invalid_request", "grant_type is missing"))
    if grant_type == "client_credentials":
        access = {"access_token": server.tokens.issue_token(), "token_type": "Bearer", "expires_in": math.ceil(ttl_s)}
        return Answer(200, access, NO_STORE)
    if grant_type == "authorization_code":
        params = singles(form, "code", "redirect_uri", "code_verifier")
        if isinstance(params, Refusal):
            return error_answer(params)
        missing = next((n for n in ("code", "redirect_uri", "code_verifier") if n not in params), None)
        if missing is not None:
            return error_answer(Refusal("invalid_request", f"{missing} is missing"))
        result = server.redeem(params["code"], client.client_id, params["redirect_uri"], params["code_verifier"])
    elif grant_type == "refresh_token":
        params = singles(form, "refresh_token", "scope")
        if isinstance(params, Refusal):
            return error_answer(params)
        if "refresh_token" not in params:
            return error_answer(Refusal("invalid_request", "refresh_token is missing"))
        scope = params.get("scope") or None  # empty: as if absent, the scope originally granted
        if scope is not None and _SCOPE.fullmatch(scope) is None:
            return error_answer(Refusal("invalid_scope", "scope must be space-separated scope tokens"))
        result = server.refresh(params["refresh_token"], client.client_id, scope)
    else:
        return error_answer(Refusal("unsupported_grant_type", "grant_type must be client_credentials, "
                                                              "authorization_code or refresh_token"))
    return error_answer(result) if isinstance(result, Refusal) else _issued(result, ttl_s)


def revoke_answer(server: AuthorizationServer, client: RegisteredClient, content_type: str, authorization: str,
                  body: bytes) -> Answer:
    """``POST /oauth/revoke`` (RFC 7009 §2): 200 whether or not the token was known."""
    form = read_form(content_type, body)
    if isinstance(form, Refusal):
        return error_answer(form)
    refusal = client_refusal(form, authorization, client)
    if refusal is not None:
        return error_answer(refusal, basic_used=basic_credentials(authorization) is not None)
    params = singles(form, "token", "token_type_hint")
    if isinstance(params, Refusal):
        return error_answer(params)
    if "token" not in params:
        return error_answer(Refusal("invalid_request", "token is missing"))
    server.revoke_token(params["token"], params.get("token_type_hint"))
    return Answer(200, {}, NO_STORE)

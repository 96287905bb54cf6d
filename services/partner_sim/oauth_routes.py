"""The simulator's OAuth 2.0 endpoints over HTTP: consent page, token, revocation, fault controls.

The decisions are in ``oauth_requests`` (checking and answering) and ``oauth`` (codes, grants,
tokens); these handlers read the request, call them in one step (nothing awaits in between, like
deliveries) and write the answer. ``/oauth/authorize`` answers people, so in HTML; the token
and revocation endpoints answer clients, so in RFC 6749 §5.2 JSON.
"""

from __future__ import annotations

from html import escape
from typing import TypeGuard
from urllib.parse import urlsplit

from aiohttp import web

from services.partner_sim.accounts import ACCOUNT_NAME_PATTERN, is_account_name
from services.partner_sim.oauth_requests import (
    FORM_CONTENT_TYPES,
    NO_STORE,
    Answer,
    AuthorizationRequest,
    ConsentAgain,
    ErrorPage,
    Redirect,
    check_authorization_request,
    decide_consent,
    parse_form,
    revoke_answer,
    token_answer,
)
from services.partner_sim.partner import SIM, PartnerSim, answer, read_json, refuse

# The consent page is a page a user would click through: nothing loads from elsewhere, it
# cannot be framed (clickjacking), and its form posts only back here.
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
MAX_LISTED_ACCOUNTS = 1000  # accounts offered as suggestions on the consent page
MAX_FAULT_TIMES = 10_000

routes = web.RouteTableDef()


def _page(status: int, title: str, body: str, redirects_to: str | None = None) -> web.Response:
    """An HTML page; ``redirects_to``: the (checked, loopback) redirect URI the form's answer
    redirects to — browsers hold a form's redirect to ``form-action`` too, so its origin is added."""
    text = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title></head>\n'
            f"<body>\n<h1>{escape(title)}</h1>\n{body}</body></html>\n")
    headers = PAGE_HEADERS
    if redirects_to is not None:
        url = urlsplit(redirects_to)
        csp = PAGE_HEADERS["Content-Security-Policy"].replace(
            "form-action 'self'", f"form-action 'self' {url.scheme}://{url.netloc}")
        headers = {**PAGE_HEADERS, "Content-Security-Policy": csp}
    return web.Response(text=text, status=status, content_type="text/html", headers=headers)


def _error_page(page: ErrorPage) -> web.Response:
    return _page(page.status, "Bad authorization request", f"<p>{escape(page.message)}</p>\n")


def _consent_page(sim: PartnerSim, request: AuthorizationRequest, account: str, problem: str | None) -> web.Response:
    hidden = {"response_type": "code", "client_id": request.client_id, "redirect_uri": request.redirect_uri,
              "code_challenge": request.code_challenge, "code_challenge_method": "S256", "scope": request.scope}
    if request.state is not None:
        hidden["state"] = request.state
    fields = "".join(f'<input type="hidden" name="{name}" value="{escape(value)}">\n' for name, value in hidden.items())
    # Configured accounts are suggested (the first 1000); while they are enforced only they are accepted.
    names = sim.accounts.names[:MAX_LISTED_ACCOUNTS] if sim.accounts.enforced else []
    options = "".join(f'<option value="{escape(name)}">' for name in names)
    suggestions = f'<datalist id="accounts">{options}</datalist>\n' if names else ""
    listed = ' list="accounts"' if names else ""
    scope = escape(request.scope) if request.scope else "(none)"
    body = (
        (f'<p role="alert">{escape(problem)}</p>\n' if problem is not None else "")
        + f"<p>{escape(request.client_id)} asks to deliver records to a partner account. Scope: {scope}</p>\n"
        + '<form method="post" action="/oauth/authorize">\n' + fields
        + f'<label>Account <input name="account" value="{escape(account)}"{listed} '
        + f'required pattern="{ACCOUNT_NAME_PATTERN}" autocomplete="off"></label>\n' + suggestions
        + '<button type="submit" name="decision" value="allow">Allow</button>\n'
        + '<button type="submit" name="decision" value="deny" formnovalidate>Deny</button>\n</form>\n'
    )
    return _page(400 if problem is not None else 200, "Connect your partner account", body, request.redirect_uri)


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={**NO_STORE, "Location": location})


def _json(result: Answer) -> web.Response:
    return answer(result.body, result.status, result.headers)


@routes.get("/oauth/authorize")
async def authorization_page(request: web.Request) -> web.Response:
    """The consent page for an authorization request (RFC 6749 §4.1.1), or why there is none."""
    sim = request.app[SIM]
    form = parse_form(request.rel_url.raw_query_string)
    if isinstance(form, str):
        return _error_page(ErrorPage(400, form))
    checked = check_authorization_request(form, sim.oauth_client)
    if isinstance(checked, ErrorPage):
        return _error_page(checked)
    if isinstance(checked, Redirect):
        return _redirect(checked.location)
    return _consent_page(sim, checked, checked.login_hint, None)


@routes.post("/oauth/authorize")
async def consent(request: web.Request) -> web.Response:
    """The consent page's answer: Allow -> ``redirect_uri?code=..&state=..``; Deny -> ``error=access_denied``."""
    sim = request.app[SIM]
    if request.content_type.lower() not in FORM_CONTENT_TYPES:
        return _error_page(ErrorPage(400, "the form must be application/x-www-form-urlencoded"))
    form = parse_form(await request.read())
    if isinstance(form, str):
        return _error_page(ErrorPage(400, form))
    decided = decide_consent(sim.oauth, form, sim.oauth_client, sim.accounts)
    if isinstance(decided, ErrorPage):
        return _error_page(decided)
    if isinstance(decided, ConsentAgain):
        return _consent_page(sim, decided.request, decided.account, decided.message)
    return _redirect(decided.location)


@routes.post("/oauth/token")
async def issue_token(request: web.Request) -> web.Response:
    """Client credentials, authorization code (PKCE) or refresh token -> tokens; RFC 6749 §5.2 errors."""
    sim = request.app[SIM]
    sim.token_requests += 1
    if sim.token_faults:
        status = sim.token_faults.pop(0)
        return refuse(status, "temporarily_unavailable" if status >= 500 else "invalid_grant")
    body = await request.read()
    result = token_answer(sim.oauth, sim.oauth_client, sim.config.token_ttl, request.content_type,
                          request.headers.get("Authorization", ""), body)
    return _json(result)


@routes.post("/oauth/revoke")
async def revoke_token(request: web.Request) -> web.Response:
    """RFC 7009: revoke an access token, or a refresh token and its grant; 200 for unknown tokens too."""
    sim = request.app[SIM]
    body = await request.read()
    return _json(revoke_answer(sim.oauth, sim.oauth_client, request.content_type,
                               request.headers.get("Authorization", ""), body))


@routes.post("/_control/oauth/revoke_grant")
async def revoke_grant(request: web.Request) -> web.Response:
    """The partner revoked this account's grants: ``{"account": name}``; 404 if it has none."""
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    account = body.get("account") if isinstance(body, dict) else None
    if not is_account_name(account):
        return refuse(400, "invalid_request", 'the body must be {"account": NAME}, NAME an account name')
    revoked = request.app[SIM].oauth.revoke_account(str(account))
    return answer({"revoked": revoked}) if revoked else refuse(404, "unknown_grant")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


@routes.post("/_control/oauth/fail_token")
@routes.post("/_control/token_faults")
async def fail_token(request: web.Request) -> web.Response:
    """The token endpoint answers ``status`` to the next ``times`` requests: ``{"status": 503, "times": 5}``."""
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    status = body.get("status") if isinstance(body, dict) else None
    times = body.get("times", 1) if isinstance(body, dict) else None
    if not (_is_int(status) and 400 <= status <= 599 and _is_int(times) and 0 <= times <= MAX_FAULT_TIMES):
        message = f'the body must be {{"status": 400-599, "times": 0-{MAX_FAULT_TIMES}}}'
        return refuse(400, "invalid_token_fault", message)
    sim = request.app[SIM]
    sim.token_faults = [status] * times
    return answer({"status": status, "times": times})

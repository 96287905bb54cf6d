"""RFC 9457 problem details (``application/problem+json``) with the gateway's stable codes.

Handlers *return* problems (a refused webhook is a normal answer, not an exception); the
middleware (the shared boundary of router/webapp.py) only turns aiohttp's own routing answers
(404, 405) and, as a last resort, an unexpected exception into the same shape, so a sender never
sees a stack trace.
"""

from __future__ import annotations

import logging

from aiohttp import web

from router import codes
from router.webapp import ErrorAnswers, error_middleware, json_response

log = logging.getLogger("router.gateway")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://event-router.dev/problems/"

INVALID_JSON = codes.GATEWAY_INVALID_JSON
MISSING_EVENT_ID = codes.GATEWAY_MISSING_EVENT_ID
INVALID_EVENT_ID = codes.GATEWAY_INVALID_EVENT_ID
INVALID_ENTITY_KEY = codes.GATEWAY_INVALID_ENTITY_KEY
TOO_DEEP = codes.GATEWAY_TOO_DEEP
EVENT_ID_TOO_LONG = codes.GATEWAY_EVENT_ID_TOO_LONG
ENTITY_KEY_TOO_LONG = codes.GATEWAY_ENTITY_KEY_TOO_LONG
INCOMPLETE_BODY = codes.GATEWAY_INCOMPLETE_BODY
BAD_SIGNATURE = codes.GATEWAY_BAD_SIGNATURE
STALE_TIMESTAMP = codes.GATEWAY_STALE_TIMESTAMP
UNKNOWN_SOURCE = codes.GATEWAY_UNKNOWN_SOURCE
UNKNOWN_TENANT = codes.GATEWAY_UNKNOWN_TENANT
INVALID_TENANT = codes.GATEWAY_INVALID_TENANT
NOT_FOUND = codes.GATEWAY_NOT_FOUND
METHOD_NOT_ALLOWED = codes.GATEWAY_METHOD_NOT_ALLOWED
TOO_LARGE = codes.GATEWAY_TOO_LARGE
UNSUPPORTED_MEDIA_TYPE = codes.GATEWAY_UNSUPPORTED_MEDIA_TYPE
UNAVAILABLE = codes.GATEWAY_UNAVAILABLE
INTERNAL = codes.GATEWAY_INTERNAL

# code → (HTTP status, title). The title is fixed per code (RFC 9457 §3.1.3); detail varies.
CODES: dict[str, tuple[int, str]] = {
    INVALID_JSON: (400, "The body is not valid JSON"),
    MISSING_EVENT_ID: (400, "The event has no event id"),
    INVALID_EVENT_ID: (400, "The event id is not a string or an integer"),
    INVALID_ENTITY_KEY: (400, "The entity key is not a string or a number"),
    TOO_DEEP: (400, "The body is nested deeper than this source accepts"),
    EVENT_ID_TOO_LONG: (400, "The event id is too long"),
    ENTITY_KEY_TOO_LONG: (400, "The entity key is too long"),
    INCOMPLETE_BODY: (400, "The body ended before its declared end"),
    BAD_SIGNATURE: (401, "The signature does not verify"),
    STALE_TIMESTAMP: (401, "The signed timestamp is too far from now"),
    UNKNOWN_SOURCE: (404, "No such webhook source"),
    UNKNOWN_TENANT: (404, "This tenant may not post to this source"),
    INVALID_TENANT: (404, "No such tenant: the name is not a tenant name"),
    NOT_FOUND: (404, "Not found"),
    METHOD_NOT_ALLOWED: (405, "Method not allowed"),
    TOO_LARGE: (413, "The body, or the record it makes, is larger than this source accepts"),
    UNSUPPORTED_MEDIA_TYPE: (415, "Unsupported content type"),
    UNAVAILABLE: (503, "The event could not be stored durably right now; retry later"),
    INTERNAL: (500, "Internal error"),
}


def problem(code: str, detail: str, *, retry_after_s: int | None = None, close: bool = False,
            headers: dict[str, str] | None = None, **members: object) -> web.Response:
    """A problem+json response for ``code``; extra ``members`` (``field``, ``header``) are added to the body."""
    status, title = CODES[code]
    body: dict[str, object] = {"type": TYPE_BASE + code.split(".", 1)[1], "title": title, "status": status,
                               "detail": detail, "code": code}
    body.update({k: v for k, v in members.items() if v is not None})
    response = json_response(body, status, content_type=PROBLEM_JSON, headers=headers)
    if retry_after_s is not None:
        response.headers["Retry-After"] = str(retry_after_s)
    if close:
        # The rest of the body is not read: the connection cannot carry another request.
        response.force_close()
    return response


def _http_answer(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own answers (routing, body too large) in the problem+json shape."""
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return problem(METHOD_NOT_ALLOWED, f"{request.method} is not allowed on {request.path}; "
                       f"allowed: {', '.join(sorted(exc.allowed_methods))}",
                       headers={"Allow": ", ".join(sorted(exc.allowed_methods))})
    if isinstance(exc, web.HTTPNotFound):
        return problem(NOT_FOUND, f"nothing is served at {request.path}; webhooks go to "
                       "POST /v1/hooks/{tenant}/{source}")
    # Other aiohttp answers (e.g. 413 from client_max_size): keep the status, give the same shape.
    body = {"type": "about:blank", "title": exc.reason, "status": exc.status, "detail": exc.text or exc.reason,
            "code": codes.gateway_http(exc.status)}
    return json_response(body, exc.status, content_type=PROBLEM_JSON)


def _internal(request: web.Request, exc: Exception) -> web.Response:
    return problem(INTERNAL, f"unexpected {type(exc).__name__}; the gateway log has the details")


# Routing answers and unexpected failures as problem+json, never a stack trace (router/webapp.py).
problem_details = error_middleware(ErrorAnswers(http=_http_answer, internal=_internal), log)

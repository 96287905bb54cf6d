"""The aiohttp skeleton (router/webapp.py): when the error boundary answers what, in each app's words."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiohttp.typedefs import Handler, Middleware

from router.webapp import ErrorAnswers, error_middleware, healthz, json_response
from services.partner_sim import partner

LOG = logging.getLogger("tests.webapp")
ANSWERS = ErrorAnswers(
    http=lambda request, exc: json_response({"http": exc.status}, exc.status),
    internal=lambda request, exc: json_response({"internal": type(exc).__name__}, 500),
    expected=((KeyError, lambda request, exc: json_response({"expected": True}, 503)),),
)


def _run(middleware: Middleware, handler: Handler, path: str = "/x") -> web.StreamResponse:
    async def call() -> web.StreamResponse:
        return await middleware(make_mocked_request("GET", path), handler)

    return asyncio.run(call())


def _body(response: web.StreamResponse) -> object:
    assert isinstance(response, web.Response) and isinstance(response.body, bytes)
    return orjson.loads(response.body)


def _raising(exc: BaseException) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise exc

    return handler


def test_answers_pass_through_and_redirects_are_not_errors() -> None:
    middleware = error_middleware(ANSWERS, LOG)
    assert _body(_run(middleware, healthz)) == {"status": "ok"}
    with pytest.raises(web.HTTPFound):
        _run(middleware, _raising(web.HTTPFound("/elsewhere")))


def test_aiohttp_errors_expected_and_unexpected_failures_in_the_apps_words(caplog: pytest.LogCaptureFixture) -> None:
    middleware = error_middleware(ANSWERS, LOG)
    assert _body(_run(middleware, _raising(web.HTTPNotFound()))) == {"http": 404}
    with caplog.at_level(logging.WARNING, LOG.name):
        response = _run(middleware, _raising(KeyError("k")))
    assert response.status == 503 and _body(response) == {"expected": True}
    assert [r.levelno for r in caplog.records] == [logging.WARNING] and not caplog.records[0].exc_info
    caplog.clear()
    with caplog.at_level(logging.WARNING, LOG.name):
        response = _run(middleware, _raising(ValueError("secret internals")))
    assert response.status == 500 and _body(response) == {"internal": "ValueError"}
    assert [r.levelno for r in caplog.records] == [logging.ERROR] and caplog.records[0].exc_info


def test_the_partner_simulator_answers_routing_errors_and_failures_as_json() -> None:
    sim_errors = partner.create_app().middlewares[0]
    response = _run(sim_errors, _raising(web.HTTPNotFound()), "/nope")
    assert response.status == 404 and _body(response) == {"error": "not_found"}
    response = _run(sim_errors, _raising(RuntimeError("secret internals")))
    assert response.status == 500 and _body(response) == {"error": "internal_error", "message": "RuntimeError"}

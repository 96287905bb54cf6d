"""The skeleton every aiohttp app of the router shares: JSON answers, the error boundary, probes.

The gateway, the admin page, the schema registry and the partner simulator each speak their own
error dialect (RFC 9457 problem+json, JSON-or-HTML, Confluent's ``error_code`` bodies, a partner's
``{"error": ...}``), but decide *when* to answer an error the same way, here:

- a handler returns its normal answers, refusals included (a refused request is not an exception);
- aiohttp's own answers of 400 and up (404 and 405 from routing, 413 from ``client_max_size``)
  are given to the app's ``http`` renderer, so they come in the app's shape; redirects pass;
- an exception the app names as expected (``expected``: Redis down, a registry store error) is
  logged as a warning, one line, and rendered by the app;
- anything else is logged with its traceback and answered by the app's ``internal`` renderer:
  a client never sees a stack trace.

Serving an app until SIGTERM/SIGINT is :func:`router.serving.serve_until_signalled`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from router import telemetry

JSON = "application/json"

class ErrorMiddleware(Protocol):
    """What :func:`error_middleware` returns: an aiohttp middleware (a coroutine function)."""

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse: ...


Render = Callable[[web.Request, Exception], web.StreamResponse]
RenderHttp = Callable[[web.Request, web.HTTPException], web.StreamResponse]


def json_response(body: object, status: int = 200, *, content_type: str = JSON,
                  headers: Mapping[str, str] | None = None) -> web.Response:
    """``body`` as JSON (orjson) with ``status``; ``content_type`` for dialects such as problem+json."""
    return web.Response(body=orjson.dumps(body), status=status, content_type=content_type, headers=headers)


async def healthz(request: web.Request) -> web.Response:
    """The process is up and serving."""
    return json_response({"status": "ok"})


async def metrics_response() -> web.Response:
    """Prometheus exposition of this process's metrics (rendered off the event loop)."""
    body = await asyncio.to_thread(telemetry.metrics_text)
    return web.Response(body=body, headers={"Content-Type": telemetry.PROMETHEUS_CONTENT_TYPE})


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``."""
    return await metrics_response()


@dataclass(frozen=True)
class ErrorAnswers:
    """How one app words a failure; :func:`error_middleware` decides when each applies."""

    http: RenderHttp  # aiohttp's own answers of 400 and up (routing, body too large)
    internal: Render  # anything unexpected; must not carry the exception's text
    expected: tuple[tuple[type[Exception], Render], ...] = ()  # known failures, logged without a traceback


def error_middleware(answers: ErrorAnswers, log: logging.Logger) -> ErrorMiddleware:
    """The error boundary of an app: see the module docstring for the order of the cases."""

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return answers.http(request, exc)
        except Exception as exc:
            for kind, render in answers.expected:
                if isinstance(exc, kind):
                    log.warning("%s %s failed: %s: %s", request.method, request.path, type(exc).__name__, exc)
                    return render(request, exc)
            log.exception("%s %s failed unexpectedly", request.method, request.path)
            return answers.internal(request, exc)

    return errors

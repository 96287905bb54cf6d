"""Continuing a trace carried in a record's ``traceparent`` header (DESIGN §8).

Spans are made only for sampled traces (flags ``01``): an unsampled record costs one string
check. The new span's own ``traceparent`` replaces the record's on its way out, so the next
process kind continues the same trace (gateway → route → deliver → partner).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()


def sampled(traceparent: str | None) -> bool:
    """True for a W3C traceparent whose sampled flag is set."""
    if traceparent is None or len(traceparent) < 55:
        return False
    try:
        return bool(int(traceparent[53:55], 16) & 1)
    except ValueError:
        return False


def start_child(tracer: trace.Tracer, name: str, traceparent: str, kind: SpanKind = SpanKind.CONSUMER,
                attributes: Mapping[str, Any] | None = None) -> tuple[Span, str]:
    """Start a span under ``traceparent``; return it and the traceparent to pass on."""
    parent = _propagator.extract({"traceparent": traceparent})
    span = tracer.start_span(name, context=parent, kind=kind, attributes=dict(attributes or {}))
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return span, carrier.get("traceparent", traceparent)


def record_failure(tracer: trace.Tracer, name: str, traceparent: str | None, code: str, message: str,
                   attributes: Mapping[str, Any] | None = None) -> None:
    """A span with error status for a record that went to a DLQ, when its trace is sampled: a
    trace shows where a record stopped and why (``router.error.code``, a stable code)."""
    if not sampled(traceparent):
        return
    span, _ = start_child(tracer, name, traceparent or "", attributes={**(attributes or {}), "router.error.code": code})
    span.set_status(trace.StatusCode.ERROR, f"{code}: {message[:200]}")
    span.end()

"""The ``traceparent`` (W3C Trace Context) each accepted event carries from the gateway on.

Every event starts a span here: a new trace, or — when the request carries a valid
``traceparent`` — a child in the sender's trace. When spans are exported (an OpenTelemetry SDK
``TracerProvider`` with a span processor), the span is a real OTel span covering verification
to broker ack. Otherwise nothing would receive the span, so only its ids are made (random, as
the SDK's own generator makes them) at a fraction of the cost (measured: the SDK span was ~20%
of the handler): the header is the same either way.
"""

from __future__ import annotations

import os
import random
import re

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from router import headers as h

_PARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """(trace id, flags) of a valid ``traceparent``, else None (invalid ones start a new trace, per W3C)."""
    if not value:
        return None
    match = _PARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, flags


def _random_hex(bits: int) -> str:
    while True:
        value = random.getrandbits(bits)
        if value:  # all-zero ids are invalid
            return f"{value:0{bits // 4}x}"


def new_traceparent(incoming: str | None, sample_ratio: float = 1.0) -> str:
    """A new span id in the incoming trace (keeping its flags, when valid) or in a new trace."""
    parent = parse_traceparent(incoming)
    if parent is None:
        sampled = sample_ratio >= 1.0 or random.random() < sample_ratio
        parent = _random_hex(128), "01" if sampled else "00"
    trace_id, flags = parent
    return f"00-{trace_id}-{_random_hex(64)}-{flags}"


def _has_processors(provider: TracerProvider) -> bool:
    # Private in the SDK; if that ever changes, assume spans go somewhere (correct, just slower).
    processors = getattr(getattr(provider, "_active_span_processor", None), "_span_processors", None)
    return True if processors is None else bool(processors)


class Tracing:
    """Starts the span of one webhook: OTel spans when spans are exported, bare ids otherwise.

    Spans are exported when the process's provider is an SDK ``TracerProvider`` with a span
    processor (``router.telemetry.setup`` adds one when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set;
    tests attach an in-memory one). That is checked per request — two attribute reads — so a
    processor attached after start-up is honoured. Bare ids sample new traces at
    ``ROUTER_TRACE_SAMPLE_RATIO`` (default 1.0), like the SDK's sampler would.
    """

    def __init__(self, provider: trace.TracerProvider | None = None, *, sample_ratio: float | None = None) -> None:
        self._provider = provider
        self._propagator = TraceContextTextMapPropagator()
        ratio = sample_ratio if sample_ratio is not None else float(os.environ.get("ROUTER_TRACE_SAMPLE_RATIO", "1"))
        self._sample_ratio = min(1.0, max(0.0, ratio))

    def _tracer(self) -> trace.Tracer | None:
        provider = self._provider or trace.get_tracer_provider()
        if isinstance(provider, TracerProvider) and _has_processors(provider):
            return provider.get_tracer("router.gateway")
        return None

    def start(self, incoming: str | None, name: str, attributes: dict[str, str]) -> tuple[str, Span | None]:
        """(traceparent to write, the span to end after the ack, or None)."""
        tracer = self._tracer()
        if tracer is None:
            return new_traceparent(incoming, self._sample_ratio), None
        parent = self._propagator.extract({h.TRACEPARENT: incoming}) if incoming else None
        span = tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=trace.set_span_in_context(span))
        return carrier[h.TRACEPARENT], span

"""OpenTelemetry for every process kind: metrics exposed for Prometheus, traces, JSON logs (DESIGN §8).

``setup(service)`` is called once by each command. Metrics go through the OTel SDK into the
Prometheus client registry and are served on ``/metrics`` (by the aiohttp apps themselves, or by
:func:`serve_metrics` for the Kafka workers on ``ROUTER_METRICS_PORT``). Traces are sampled
by ``ROUTER_TRACE_SAMPLE_RATIO`` or the SDK's ``OTEL_TRACES_SAMPLER``/``_ARG``, and exported as
``OTEL_TRACES_EXPORTER`` and ``OTEL_EXPORTER_OTLP_*`` say (:func:`span_exporter_from_env`);
``OTEL_SERVICE_NAME`` names the service. Tests install an in-memory exporter instead.
"""

from __future__ import annotations

import http.server
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased

from router.errors import ConfigError
from router.progress import Progress

_lock = threading.Lock()
_state: dict[str, Any] = {"done": False, "tracer_provider": None}


def sampler_from_env(env: Mapping[str, str]) -> Sampler | None:
    """``ROUTER_TRACE_SAMPLE_RATIO`` (0..1, parent-based) when set; else None, so the SDK reads
    ``OTEL_TRACES_SAMPLER`` and ``OTEL_TRACES_SAMPLER_ARG`` (default: parent-based, always on)."""
    text = env.get("ROUTER_TRACE_SAMPLE_RATIO")
    if text is None:
        return None
    try:
        ratio = float(text)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"ROUTER_TRACE_SAMPLE_RATIO: {text[:40]!r} is not a number from 0 to 1")
    return ParentBased(TraceIdRatioBased(ratio))


def span_exporter_from_env(env: Mapping[str, str]) -> SpanExporter | None:
    """The exporter ``OTEL_TRACES_EXPORTER`` names (``otlp``, ``console``, ``none``); by default OTLP
    when an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``),
    else none. OTLP goes over ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf``, the default, or
    ``grpc`` with the opentelemetry-exporter-otlp-proto-grpc package); the exporter reads its own
    endpoint, headers and timeout variables."""
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    kind = env.get("OTEL_TRACES_EXPORTER", "otlp" if endpoint else "none").split(",")[0].strip().lower()
    if kind == "none":
        return None
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if kind != "otlp":
        raise ConfigError(f"OTEL_TRACES_EXPORTER: {kind[:40]!r} is not one of otlp, console, none")
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
        except ImportError:
            raise ConfigError("OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the opentelemetry-exporter-otlp-proto-grpc "
                              "package; or use http/protobuf") from None
        return GrpcExporter()  # type: ignore[no-any-return]
    if protocol not in ("http/protobuf", "http/json"):
        raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol[:40]!r} is not grpc or http/protobuf")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def setup(service: str, *, span_processor: SpanProcessor | None = None, log_level: str | None = None) -> None:
    """Install the meter and tracer providers and JSON logging for this process (idempotent)."""
    with _lock:
        if _state["done"]:
            # Already set up (a process sets up once); a test's exporter still gets attached.
            if span_processor is not None and _state["tracer_provider"] is not None:
                _state["tracer_provider"].add_span_processor(span_processor)
            return
        _state["done"] = True
        # OTEL_SERVICE_NAME (and OTEL_RESOURCE_ATTRIBUTES) win over the default name, as the SDK documents.
        resource = Resource.create({} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": f"router-{service}"})
        try:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader

            readers: list[Any] = [PrometheusMetricReader()]
        except ImportError:  # pragma: no cover - the exporter is a declared dependency
            readers = []
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
        provider = TracerProvider(resource=resource, sampler=sampler_from_env(os.environ))
        if span_processor is not None:
            provider.add_span_processor(span_processor)
        else:
            exporter = span_exporter_from_env(os.environ)
            if exporter is not None:
                provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _state["tracer_provider"] = provider
        setup_logging(service, log_level or os.environ.get("ROUTER_LOG_LEVEL", "INFO"))


def metrics_text() -> bytes:
    """The Prometheus exposition of every metric of this process."""
    from prometheus_client import generate_latest

    return bytes(generate_latest())


PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Verdict:
    """A probe's answer: 200 when ``ok``, else 503; ``body`` is the JSON sent either way."""

    ok: bool
    body: dict[str, object]


def worker_verdict(heartbeat: Heartbeat, group_stuck: bool, progress: Progress) -> Verdict:
    """A Kafka worker's health, worst first: its loop stalled, its consumer group stuck
    (``router.groupwatch``), its batches failing for ``ROUTER_FAILING_AFTER_S`` (``router.progress``)."""
    if not heartbeat.healthy():
        return Verdict(False, {"status": "stalled", "since_s": round(heartbeat.age(), 1)})
    if group_stuck:
        return Verdict(False, {"status": "stuck"})
    status = progress.status()
    return Verdict(not status.failing, status.body())


def serve_metrics(port: int, health: Callable[[], Verdict | bool],
                  host: str = "0.0.0.0") -> http.server.ThreadingHTTPServer:  # noqa: S104
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` from a daemon thread (for the Kafka workers).

    Both probes answer ``health()``: 200 and ``{"status": "ok"}``, or 503 and what is wrong
    (docs/deploy.md "Probes": readiness and liveness differ only in how long a manifest waits)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, status, ctype = metrics_text(), 200, PROMETHEUS_CONTENT_TYPE
            elif path in ("/healthz", "/readyz"):
                verdict = health()
                if isinstance(verdict, bool):
                    verdict = Verdict(verdict, {"status": "ok" if verdict else "stalled"})
                body, status, ctype = orjson.dumps(verdict.body), (200 if verdict.ok else 503), "application/json"
            else:
                body, status, ctype = b"not found", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


def maybe_serve_metrics(health: Callable[[], Verdict | bool]) -> int | None:
    """Serve metrics and probes on ``ROUTER_METRICS_PORT`` when it is set; return the port."""
    raw = os.environ.get("ROUTER_METRICS_PORT")
    if not raw:
        return None
    server = serve_metrics(int(raw), health)
    return int(server.server_address[1])


class Heartbeat:
    """The loop beats every iteration; it is stalled when it has not beaten for ``stale_s``."""

    def __init__(self, stale_s: float = 60.0) -> None:
        self.stale_s = stale_s
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def age(self) -> float:
        """Seconds since the last beat."""
        return time.monotonic() - self.last

    def healthy(self) -> bool:
        return self.age() < self.stale_s


# ---- logs ---------------------------------------------------------------------------------------

_CONTEXT_FIELDS = ("tenant", "integration", "event_id", "topic", "partition", "offset", "code", "group")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, service, trace id, and context fields.

    Context comes from ``extra={...}`` (tenant, integration, event_id, ...). Payloads and secrets
    are never logged by the router; settings print masked (``Secret``).
    """

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "service": self.service,
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            doc["trace_id"] = format(span.trace_id, "032x")
        for name in _CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                doc[name] = value
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return orjson.dumps(doc, default=str).decode()


def setup_logging(service: str, level: str = "INFO") -> None:
    """JSON lines on stderr for the router's loggers; chatty client libraries at WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for chatty in ("httpx", "httpx2", "aiohttp.access", "urllib3"):
        logging.getLogger(chatty).setLevel(logging.WARNING)

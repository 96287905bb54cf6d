"""Tracing by the SDK's own environment variables (issue 22): OTEL_TRACES_EXPORTER,
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT on its own, OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_TRACES_SAMPLER
(left to the SDK when ROUTER_TRACE_SAMPLE_RATIO is unset); a bad value is one config error."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased

from router.errors import ConfigError
from router.telemetry import sampler_from_env, span_exporter_from_env


def test_exporters_follow_the_otel_variables() -> None:
    assert span_exporter_from_env({}) is None
    assert isinstance(span_exporter_from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}),
                      OTLPSpanExporter)
    assert isinstance(span_exporter_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}),
                      OTLPSpanExporter)
    assert span_exporter_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"}) is None
    assert isinstance(span_exporter_from_env({"OTEL_TRACES_EXPORTER": "console"}), ConsoleSpanExporter)
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER"):
        span_exporter_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(ConfigError, match="grpc"):
        span_exporter_from_env({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"})


def test_the_sample_ratio_is_validated_and_otherwise_left_to_the_sdk() -> None:
    assert sampler_from_env({}) is None  # the SDK reads OTEL_TRACES_SAMPLER / _ARG
    assert isinstance(sampler_from_env({"ROUTER_TRACE_SAMPLE_RATIO": "0.25"}), ParentBased)
    for bad in ("half", "2", "-0.1", "nan"):
        with pytest.raises(ConfigError, match="ROUTER_TRACE_SAMPLE_RATIO"):
            sampler_from_env({"ROUTER_TRACE_SAMPLE_RATIO": bad})

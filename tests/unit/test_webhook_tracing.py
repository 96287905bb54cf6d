"""The gateway's traceparent: W3C parsing, continuation, sampling, and real spans when exported."""

from __future__ import annotations

import re

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from producers.webhooks.tracing import Tracing, new_traceparent, parse_traceparent

VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
FORM = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


@pytest.mark.parametrize("value", [
    None, "", "garbage", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero parent id
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
    "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
    VALID + "-extra",  # version 00 has exactly four fields
])
def test_invalid_traceparents_start_a_new_trace(value: str | None) -> None:
    assert parse_traceparent(value) is None
    made = new_traceparent(value)
    assert FORM.match(made) and made.split("-")[1] != "0af7651916cd43dd8448eb211c80319c"


def test_valid_traceparent_is_continued_with_a_new_span() -> None:
    assert parse_traceparent(VALID) == ("0af7651916cd43dd8448eb211c80319c", "01")
    assert parse_traceparent("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-future") is not None
    made = new_traceparent(VALID)
    assert made.startswith("00-0af7651916cd43dd8448eb211c80319c-") and made.endswith("-01")
    assert made.split("-")[2] != "b7ad6b7169203331"
    assert new_traceparent(VALID.replace("-01", "-00")).endswith("-00")  # the sender's sampling decision holds


def test_new_traces_are_sampled_at_the_ratio() -> None:
    assert all(new_traceparent(None, 1.0).endswith("-01") for _ in range(50))
    assert all(new_traceparent(None, 0.0).endswith("-00") for _ in range(50))
    assert len({new_traceparent(None) for _ in range(100)}) == 100


def test_without_a_span_processor_only_ids_are_made() -> None:
    traceparent, span = Tracing(TracerProvider()).start(VALID, "webhook demo", {})
    assert span is None and traceparent.startswith("00-0af7651916cd43dd8448eb211c80319c-")


def test_with_an_exporter_a_real_span_is_recorded_in_the_senders_trace() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    traceparent, span = Tracing(provider).start(VALID, "webhook demo", {"router.tenant": "acme"})
    assert span is not None
    span.end()
    [finished] = exporter.get_finished_spans()
    assert finished.name == "webhook demo" and finished.attributes == {"router.tenant": "acme"}
    assert f"{finished.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert traceparent == f"00-{finished.context.trace_id:032x}-{finished.context.span_id:016x}-01"
    assert finished.parent is not None and f"{finished.parent.span_id:016x}" == "b7ad6b7169203331"

"""Duration histograms are in seconds with boundaries from 1 ms to 60 s (issue 22): with the SDK's
default boundaries (0, 5, 10, ... 10000) every partner request of a few milliseconds fell into
the first bucket."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from router.outcomes import SECONDS_BUCKETS, seconds_histogram


def test_a_few_milliseconds_land_in_their_own_bucket() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    histogram = seconds_histogram(meter, "router_test_seconds", "a test")
    for seconds in (0.0038, 0.0041, 0.2, 45.0):
        histogram.record(seconds)
    data = reader.get_metrics_data()
    assert data is not None
    [point] = [p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
               for p in m.data.data_points]
    assert isinstance(point, HistogramDataPoint)
    assert tuple(point.explicit_bounds) == SECONDS_BUCKETS
    counts = dict(zip([*point.explicit_bounds, float("inf")], point.bucket_counts, strict=True))
    assert counts[0.005] == 2 and counts[0.25] == 1 and counts[60.0] == 1

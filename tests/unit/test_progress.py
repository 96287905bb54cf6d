"""Health that tells the truth (issue 19): the failure-run tracker (router.progress), the probes it
drives (router.telemetry), the setting, and the worker rows the admin page shows — from plain data."""

from __future__ import annotations

import urllib.error
import urllib.request

import orjson
import pytest

from router.errors import ConfigError
from router.health import WORKER_FORGET_S, WORKER_STALE_S, worker_entry
from router.progress import BROKER, OTHER, REDIS, Progress, ProgressStatus
from router.settings import Settings
from router.telemetry import Heartbeat, Verdict, serve_metrics, worker_verdict
from services.admin.workers import render_workers, worker_rows

AFTER = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tracker() -> tuple[Progress, Clock]:
    clock = Clock()
    return Progress("route", AFTER, clock), clock


def test_idle_without_failures_is_healthy() -> None:
    progress, clock = tracker()
    clock.now += 10 * AFTER
    assert not progress.failing()
    assert progress.status().body() == {"status": "ok"}


def test_an_unbroken_run_of_failures_is_failing_after_the_setting_and_a_success_ends_it() -> None:
    progress, clock = tracker()
    progress.succeeded()
    clock.now += 5
    progress.failed(REDIS)
    clock.now += AFTER - 1
    progress.failed(REDIS)
    status = progress.status()
    assert not status.failing and status.body()["status"] == "retrying"
    clock.now += 1
    status = progress.status()
    assert status.failing, "failing once the run has lasted ROUTER_FAILING_AFTER_S, retries or not"
    assert status.body() == {"status": "failing", "since_s": AFTER, "reason": REDIS, "part": "batch",
                             "last_success_s": AFTER + 5}
    progress.succeeded()
    assert not progress.failing() and progress.status().since_s is None


def test_the_run_is_timed_from_its_first_failure_and_reports_the_latest_reason() -> None:
    progress, clock = tracker()
    progress.failed(BROKER)
    clock.now += AFTER / 2
    progress.failed(REDIS)
    clock.now += AFTER / 2
    assert progress.status().failing and progress.status().reason == REDIS


def test_unknown_reasons_are_other_so_the_counter_stays_bounded() -> None:
    progress, _ = tracker()
    progress.failed("Error 111 connecting to redis://:secret@10.0.0.1")
    assert progress.status().reason == OTHER


def test_parts_have_their_own_runs_and_settling_ends_one_without_a_success() -> None:
    progress, clock = tracker()
    progress.failed(REDIS, "requests")
    clock.now += 1
    progress.succeeded("states")  # another part working does not hide the failing one
    clock.now += AFTER
    status = progress.status()
    assert status.failing and status.part == "requests" and status.last_success_s is None
    progress.settled("requests")
    assert not progress.failing() and progress.status().last_success_s == AFTER


def test_the_verdict_is_worst_first_and_never_quotes_an_error() -> None:
    progress, clock = tracker()
    beat = Heartbeat()
    assert worker_verdict(beat, False, progress) == Verdict(True, {"status": "ok"})
    progress.failed(REDIS)
    clock.now += AFTER
    verdict = worker_verdict(beat, False, progress)
    assert not verdict.ok and verdict.body["status"] == "failing" and verdict.body["reason"] == REDIS
    assert worker_verdict(beat, True, progress) == Verdict(False, {"status": "stuck"})
    beat.last -= beat.stale_s + 1
    assert worker_verdict(beat, True, progress).body["status"] == "stalled"


def test_readyz_and_healthz_answer_503_with_the_reason() -> None:
    verdict = Verdict(True, {"status": "ok"})
    server = serve_metrics(0, lambda: verdict, host="127.0.0.1")
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for path in ("/readyz", "/healthz"):
            with urllib.request.urlopen(base + path, timeout=5) as resp:
                assert resp.status == 200 and orjson.loads(resp.read()) == {"status": "ok"}
        verdict = Verdict(False, {"status": "failing", "since_s": 61.0, "reason": "redis"})
        for path in ("/readyz", "/healthz?verbose"):
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(base + path, timeout=5)
            assert caught.value.code == 503
            assert orjson.loads(caught.value.read())["reason"] == "redis"
    finally:
        server.shutdown()
        server.server_close()


def test_the_setting_is_read_like_the_others() -> None:
    assert Settings.from_env({}).failing_after_s == 60.0
    assert Settings.from_env({"ROUTER_FAILING_AFTER_S": "2.5"}).failing_after_s == 2.5
    for bad in ("0", "-3", "soon", "nan", "inf"):
        with pytest.raises(ConfigError, match="ROUTER_FAILING_AFTER_S"):
            Settings.from_env({"ROUTER_FAILING_AFTER_S": bad})


NOW_MS = 1_700_000_000_000


def _entry(status: ProgressStatus, beat_ms: int, member: str = "host:1") -> bytes:
    return worker_entry("route", "router.route", member, status, beat_ms)


def test_worker_rows_show_failing_retrying_ok_and_silent_workers() -> None:
    failing = ProgressStatus(True, 90.0, BROKER, "batch", 95.0)
    entries: dict[bytes | str, bytes | str] = {
        "route:a": _entry(failing, NOW_MS, "a"),
        "route:b": _entry(ProgressStatus(False, 3.0, REDIS, "batch", 4.0), NOW_MS, "b"),
        "route:c": _entry(ProgressStatus(False, None, None, None, 1.0), NOW_MS, "c"),
        "route:d": _entry(ProgressStatus(False, None, None, None, 1.0), NOW_MS - int(WORKER_STALE_S * 1000) - 1, "d"),
        "route:e": _entry(failing, NOW_MS - int(WORKER_FORGET_S * 1000) - 1, "e"),
        "route:f": b"not json",
    }
    rows = worker_rows(entries, NOW_MS)
    assert [(r.member, r.state(NOW_MS)) for r in rows] == [
        ("a", "failing"), ("b", "retrying"), ("c", "ok"), ("d", "stale")]
    assert rows[0].failing_since_ms == NOW_MS - 90_000 and rows[0].last_success_ms == NOW_MS - 95_000
    alerts, table = render_workers(rows, NOW_MS)
    assert alerts.count('data-testid="worker-failing"') == 1 and "broker" in alerts
    assert 'data-testid="worker-route-d"' in table and "not reporting" in table
    assert render_workers([], NOW_MS) == ("", "")


def test_a_worker_row_escapes_what_it_shows() -> None:
    hostile = _entry(ProgressStatus(False, None, None, None, None), NOW_MS, "<script>x</script>")
    _alerts, table = render_workers(worker_rows({"f": hostile}, NOW_MS), NOW_MS)
    assert "<script>" not in table and "&lt;script&gt;" in table

"""router.pacing.Pacer: N events at R per second take (N-1)/R, a stall is not made up in a burst."""

from __future__ import annotations

from router.pacing import Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_events_are_spaced_one_interval_apart_whoever_waits() -> None:
    clock = Clock()
    pacer = Pacer(10, clock)
    for _ in range(20):
        clock.now += pacer.delay()  # the caller waits exactly the delay
    assert abs((clock.now - 100.0) - 1.9) < 1e-9  # 20 events at 10/s: 19 intervals


def test_a_stall_restarts_the_schedule_instead_of_bursting() -> None:
    clock = Clock()
    pacer = Pacer(10, clock)
    assert pacer.delay() == 0.0
    clock.now += 5.0  # the caller was busy for 50 intervals
    delays = [pacer.delay() for _ in range(4)]  # asked at once: only one interval is made up
    assert [round(d, 9) for d in delays] == [0.0, 0.0, 0.1, 0.2], "no burst of 50 after a stall"


def test_no_rate_means_no_wait() -> None:
    pacer = Pacer(None, Clock())
    assert [pacer.delay() for _ in range(5)] == [0.0] * 5

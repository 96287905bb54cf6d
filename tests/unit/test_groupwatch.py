"""The stuck-group verdict (router.groupwatch) from plain observations."""

from __future__ import annotations

from router.groupwatch import STUCK_AFTER_SESSIONS, GroupProgress, GroupWatch, Throttle, stuck_groups

SESSION_MS = 6000
AFTER = STUCK_AFTER_SESSIONS * SESSION_MS / 1000


class Broker:
    """Answers ``progress`` with what the test sets, and counts the questions."""

    def __init__(self, committed: int = 100, lag: int = 50) -> None:
        self.progress: GroupProgress | None = GroupProgress(committed, lag)
        self.asked = 0

    def __call__(self) -> GroupProgress | None:
        self.asked += 1
        return self.progress


def test_no_partitions_no_commits_and_lag_is_stuck_after_the_documented_wait() -> None:
    watch, broker = GroupWatch("g", SESSION_MS), Broker()
    assert not watch.observe(0.0, False, broker)
    assert not watch.observe(AFTER - 1, False, broker)
    assert not watch.stuck
    assert watch.observe(AFTER, False, broker), "the verdict changed"
    assert watch.stuck and watch.lag == 50
    assert watch.observe(AFTER + 2, True, broker) and not watch.stuck, "an assignment ends it"


def test_a_spare_member_of_a_moving_group_is_not_stuck() -> None:
    watch, broker = GroupWatch("g", SESSION_MS), Broker()
    watch.observe(0.0, False, broker)
    assert broker.progress is not None
    broker.progress = GroupProgress(broker.progress.committed + 10, 50)  # others commit
    watch.observe(AFTER, False, broker)
    assert not watch.stuck
    watch.observe(AFTER * 1.5, False, broker)
    assert not watch.stuck, "the wait starts again from the last movement"
    watch.observe(AFTER * 2, False, broker)
    assert watch.stuck


def test_no_lag_is_idle_not_stuck_and_a_silent_broker_keeps_the_verdict() -> None:
    watch, broker = GroupWatch("g", SESSION_MS), Broker(lag=0)
    watch.observe(0.0, False, broker)
    watch.observe(AFTER, False, broker)
    assert not watch.stuck
    broker.progress = GroupProgress(100, 7)
    watch.observe(AFTER + 1, False, broker)
    assert watch.stuck
    broker.progress = None
    assert not watch.observe(AFTER + 2, False, broker)
    assert watch.stuck


def test_an_assigned_member_never_asks_the_broker() -> None:
    watch, broker = GroupWatch("g", SESSION_MS), Broker()
    for t in range(0, 200, 2):
        watch.observe(float(t), True, broker)
    assert broker.asked == 0 and not watch.stuck


def test_throttle_and_the_page_entries() -> None:
    due = Throttle(2.0)
    assert [due(t) for t in (0.0, 1.0, 2.0, 2.5, 4.1)] == [True, False, True, False, True]
    entries: dict[bytes | str, bytes | str] = {b"route": b'{"until_ms": 2000}', b"old": b'{"until_ms": 500}',
                                               b"junk": b"[", "deliver": b'{}'}
    assert stuck_groups(entries, now_ms=1000) == ["route"]


def test_static_membership_only_when_a_slot_id_is_set() -> None:
    from router.kafka import consumer_config, member_config
    from router.settings import Settings

    plain = Settings.from_env({}).replace(kafka_bootstrap_servers="127.0.0.1:9092")
    assert "group.instance.id" not in member_config(plain, "router.route")
    static = Settings.from_env({"ROUTER_KAFKA_GROUP_INSTANCE_ID": "router.route-0",
                                "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"})
    assert member_config(static, "router.route")["group.instance.id"] == "router.route-0"
    assert "group.instance.id" not in consumer_config(static, "router.dlq-reader"), "readers never join"

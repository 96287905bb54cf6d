"""Is this worker's consumer group stuck? Seen and said, not sat through (DESIGN §4, §7).

A group can stop handing out partitions: the embedded broker's coordinator wedges when every
member of a group vanishes within seconds (docs/embedded-broker.md), and then each new member
sits in ``consume()`` with no assignment, healthy by every other probe. A worker's
:class:`GroupWatch` calls the group **stuck** when, for :data:`STUCK_AFTER_SESSIONS` session
timeouts, this member has had no partition AND the group's committed offsets have not moved AND
the group has lag. A spare replica (more members than partitions) also has no partition, but the
group's commits move, so it is never called stuck.

While stuck, the worker's ``/healthz`` fails (so an orchestrator restarts or alerts), one error
log line names the group, ``router_group_stuck{group}`` is 1, and the health page shows a banner
(a field of the ``<prefix>groups:stuck`` hash, refreshed while it lasts).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from router import redisconn

log = logging.getLogger("router.group")

STUCK_AFTER_SESSIONS = 5  # no partition for this many session timeouts, no commit moving, lag: stuck
CHECK_EVERY_S = 2.0
PAGE_TTL_S = 60  # a banner the worker stopped refreshing (it died, or recovered) goes after this
IO_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class GroupProgress:
    """What the broker says of the group's topics: committed offsets summed, and lag."""

    committed: int
    lag: int


class GroupWatch:
    """The stuck-group verdict for one worker; ``observe`` is pure bookkeeping, fed by the loop."""

    def __init__(self, group: str, session_timeout_ms: int) -> None:
        self.group = group
        self.stuck_after_s = STUCK_AFTER_SESSIONS * session_timeout_ms / 1000
        self.stuck = False
        self._unassigned_since: float | None = None
        self._baseline: int | None = None  # committed offsets when the current wait began
        self.lag = 0

    def observe(self, now: float, assigned: bool, progress: Callable[[], GroupProgress | None]) -> bool:
        """Update the verdict; returns whether it changed. ``progress`` (broker I/O) is called when a
        wait without partitions begins (the baseline) and once it has lasted ``stuck_after_s``."""
        was = self.stuck
        if assigned:
            self._unassigned_since, self._baseline, self.stuck = None, None, False
        else:
            if self._unassigned_since is None:
                self._unassigned_since = now
            if self._baseline is None:
                first = progress()
                self._baseline = first.committed if first is not None else None
            elif now - self._unassigned_since >= self.stuck_after_s:
                seen = progress()
                if seen is None:  # the broker did not answer: keep the verdict
                    return False
                if seen.committed != self._baseline:
                    # The group is moving (this member is a spare): wait again from here.
                    self._baseline, self._unassigned_since, self.stuck = seen.committed, now, False
                else:
                    self.stuck, self.lag = seen.lag > 0, seen.lag
        if self.stuck != was:
            if self.stuck:
                log.error("consumer group %s is stuck: this member has had no partition for %.0fs, the group "
                          "committed nothing meanwhile and has %d record(s) of lag; see docs/embedded-broker.md",
                          self.group, now - (self._unassigned_since or now), self.lag, extra={"group": self.group})
            else:
                log.warning("consumer group %s is moving again", self.group, extra={"group": self.group})
            return True
        return False


def group_progress(consumer: Consumer, topics: Iterable[str]) -> GroupProgress | None:
    """The group's committed offsets and lag on ``topics``, asked of the broker (None if it fails).

    Lag uses the reported high watermark; on the embedded broker that is the last batch's base
    offset, so lag may read low but is not positive when there is none."""
    try:
        tps = [TopicPartition(t, p) for t in topics
               for p in sorted(consumer.list_topics(t, timeout=IO_TIMEOUT_S).topics[t].partitions)]
        committed = consumer.committed(tps, timeout=IO_TIMEOUT_S)
        total = lag = 0
        for tp in committed:
            low, high = consumer.get_watermark_offsets(tp, timeout=IO_TIMEOUT_S, cached=False)
            at = tp.offset if tp.offset >= 0 else low
            total += max(at, 0)
            lag += max(0, high - at)
    except (KafkaException, KeyError) as exc:
        log.info("group progress unavailable: %s", exc)
        return None
    return GroupProgress(total, lag)


class Throttle:
    """True at most once per ``every_s`` (the watch's I/O runs from the loop, not per poll)."""

    def __init__(self, every_s: float = CHECK_EVERY_S) -> None:
        self.every_s = every_s
        self._next = 0.0

    def __call__(self, now: float) -> bool:
        if now < self._next:
            return False
        self._next = now + self.every_s
        return True


def page_key(prefix: str) -> str:
    """The hash of stuck groups the health page reads (field: group, value: JSON)."""
    return f"{prefix}groups:stuck"


def page_entry(watch: GroupWatch, member: str, now_ms: int) -> bytes:
    """The health page's banner data for a stuck group, valid for :data:`PAGE_TTL_S`."""
    return orjson.dumps({"group": watch.group, "member": member, "since_ms": now_ms,
                         "until_ms": now_ms + PAGE_TTL_S * 1000})


def time_ms() -> int:
    """Now, in epoch milliseconds (the page entries' clock)."""
    return int(time.time() * 1000)


def member_name() -> str:
    """This worker as the health page names it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def report(client: redisconn.Sync | None, prefix: str, watch: GroupWatch, changed: bool) -> None:
    """Keep the health page's banner for ``watch`` (best effort: the page is for people)."""
    if client is None or not (watch.stuck or changed):
        return
    try:
        if watch.stuck:
            client.hset(page_key(prefix), watch.group, page_entry(watch, member_name(), time_ms()))
        else:
            client.hdel(page_key(prefix), watch.group)
    except redisconn.UNAVAILABLE as exc:
        log.info("stuck-group banner not updated: %s", exc)


async def report_async(client: redisconn.Async, prefix: str, watch: GroupWatch, changed: bool) -> None:
    """``report`` on an asyncio client."""
    if not (watch.stuck or changed):
        return
    try:
        if watch.stuck:
            await client.hset(page_key(prefix), watch.group,
                              page_entry(watch, member_name(), time_ms()))
        else:
            await client.hdel(page_key(prefix), watch.group)
    except redisconn.UNAVAILABLE as exc:
        log.info("stuck-group banner not updated: %s", exc)


def stuck_groups(entries: Mapping[bytes | str, bytes | str], now_ms: int) -> list[str]:
    """Groups whose banner is still valid, from the ``page_key`` hash (unreadable entries skipped)."""
    out = []
    for field, raw in entries.items():
        try:
            until = int(orjson.loads(raw).get("until_ms", 0))
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            continue
        if until > now_ms:
            out.append(field.decode("utf-8", "replace") if isinstance(field, bytes) else field)
    return sorted(out)


# One gauge per process, observing every live watch.
_WATCHES: weakref.WeakSet[GroupWatch] = weakref.WeakSet()
_lock = threading.Lock()


def _observe(_options: CallbackOptions) -> Iterator[Observation]:
    for watch in list(_WATCHES):
        yield Observation(1 if watch.stuck else 0, {"group": watch.group})


def register(watch: GroupWatch) -> GroupWatch:
    """Export ``router_group_stuck{group}`` for ``watch`` (the gauge is created once per process)."""
    with _lock:
        if not _WATCHES:
            metrics.get_meter("router").create_observable_gauge(
                "router_group_stuck", callbacks=[_observe],
                description="1 while this worker's consumer group hands out no partitions, commits nothing and has lag")
        _WATCHES.add(watch)
    return watch

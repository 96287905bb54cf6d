"""The fault test's moving parts: pipeline processes we own (started, SIGKILLed, restarted), a
watcher that notices processes exiting on their own, a well-behaved webhook sender, and readers
of topics and committed offsets."""

from __future__ import annotations

import http.client
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from support.signing import sign_standard_webhooks
from tests.fault.workload import Post
from tools.dev.embedded.procs import ChildProcess


class Service:
    """One pipeline process (gateway, route or deliver worker); each (re)start logs to its own file."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.log_dir = log_dir
        self.runs = 0
        self.log = log_dir / f"{name}.0.log"
        self.child: ChildProcess | None = None
        self.started_at = 0.0

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.child.proc if self.child is not None else None

    def start(self) -> None:
        self.runs += 1
        self.log = self.log_dir / f"{self.name}.{self.runs}.log"
        self.child = ChildProcess(f"{self.name} (run {self.runs})", self.argv, log=self.log, env=self.env)
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.child is not None and self.child.alive()

    def ready(self) -> bool:
        """Up: it printed its READY line and is still running."""
        return self.alive() and self.child is not None and self.child.line_starting("READY ") is not None

    def kill(self) -> int:
        """SIGKILL (the crash under test); returns the pid killed."""
        assert self.child is not None
        return self.child.kill()

    def terminate(self) -> None:
        if self.child is not None:
            self.child.terminate()

    def reap(self, deadline_s: float) -> None:
        """Wait for a terminated process; SIGKILL it at the deadline."""
        if self.child is not None:
            self.child.stop(grace_s=deadline_s)

    def tail(self, lines: int = 12) -> str:
        return "\n".join("      " + ln[:300] for ln in self._text().splitlines()[-lines:])

    def _text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@dataclass(frozen=True)
class Crash:
    """A process that exited without being killed by the test."""

    name: str
    run: int
    code: int | None
    at_s: float
    log: Path
    tail: str

    def describe(self) -> str:
        return (f"{self.name} (run {self.run}) exited with code {self.code} at t={self.at_s:.1f}s; "
                f"{self.log}:\n{self.tail}")


class Supervisor:
    """Restarts any process that exits on its own (recording it as a crash: that is a product
    defect), so one run still checks every invariant. Test kills go through ``kill_and_restart``,
    under the same lock, so the watcher never mistakes them for crashes.

    Every restart happens on the watcher's thread: children die with the thread that started them
    (``PR_SET_PDEATHSIG`` follows the forking thread, not the process), and this thread lives
    until ``shutdown``."""

    def __init__(self, services: Sequence[Service], t0: float) -> None:
        self.services = list(services)
        self.t0 = t0
        self.lock = threading.Lock()
        self.crashes: list[Crash] = []
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.stopping = False
        self._pending: set[str] = set()
        self.thread = threading.Thread(target=self._watch, name="fault-supervisor", daemon=True)

    def _watch(self) -> None:
        while not self.stop.is_set():
            self.wake.wait(0.2)
            self.wake.clear()
            with self.lock:
                if self.stopping:
                    continue
                for service in self.services:
                    if service.name in self._pending:
                        self._pending.discard(service.name)
                        service.start()
                    elif service.proc is not None and service.proc.poll() is not None:
                        self.crashes.append(Crash(service.name, service.runs, service.proc.returncode,
                                                  time.monotonic() - self.t0, service.log, service.tail()))
                        service.start()

    def kill_and_restart(self, service: Service) -> int:
        """SIGKILL ``service`` and have the watcher start it again at once; returns the pid killed."""
        with self.lock:
            pid = service.kill()
            self._pending.add(service.name)
        self.wake.set()
        return pid

    def restarted(self, service: Service) -> bool:
        with self.lock:
            return service.name not in self._pending

    def shutdown(self) -> None:
        """SIGTERM every process and reap it (SIGKILL after 15 s), then stop watching."""
        with self.lock:
            self.stopping = True
        for service in self.services:
            service.terminate()
        for service in self.services:
            service.reap(15)
        self.stop.set()
        self.wake.set()
        if self.thread.is_alive():
            self.thread.join(10)


class WebhookSender:
    """A well-behaved partner: sends its webhooks in order, each retried until the gateway answers
    202 (the gateway is SIGKILLed and restarted under it), at the pace it was given."""

    def __init__(self, name: str, gateway_url: str, path: str, key: bytes, posts: Sequence[tuple[float, Post]],
                 deadline_per_post_s: float = 120.0) -> None:
        self.name = name
        host, port = gateway_url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.path = path
        self.key = key
        self.posts = list(posts)
        self.deadline_per_post_s = deadline_per_post_s
        self.accepted = 0
        self.retries = 0
        self.errors: list[str] = []
        self._conn: http.client.HTTPConnection | None = None

    def run(self, t0: float, stop: threading.Event) -> None:
        try:
            for at_s, post in self.posts:
                if stop.wait(max(0.0, t0 + at_s - time.monotonic())):
                    return
                if not self._send_until_accepted(post, stop):
                    return
        except Exception as exc:  # the test reports it; a thread must not die silently
            self.errors.append(f"{self.name}: {exc!r}")
        finally:
            self._close()

    def _send_until_accepted(self, post: Post, stop: threading.Event) -> bool:
        event = post.event
        end = time.monotonic() + self.deadline_per_post_s
        backoff = 0.05
        last = ""
        while not stop.is_set():
            status, body = self._post(event.event_id, event.body)
            if status == 202:
                self.accepted += 1
                return True
            last = f"{status} {body[:200]!r}"
            if status and status not in (429, 502, 503, 504):
                self.errors.append(f"{self.name}: the gateway refused {event.describe()}: {last}")
                return True  # a harness bug, reported; the other webhooks still go
            if time.monotonic() > end:
                self.errors.append(f"{self.name}: {event.describe()} not accepted within "
                                   f"{self.deadline_per_post_s:.0f}s; last answer: {last}")
                return False
            self.retries += 1
            stop.wait(backoff)
            backoff = min(backoff * 2, 1.0)
        return False

    def _post(self, msg_id: str, body: bytes) -> tuple[int, bytes]:
        """One signed POST (re-signed on each try, as a real sender does); (0, error) when the connection fails."""
        now = int(time.time())
        headers = {"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(now),
                   "webhook-signature": sign_standard_webhooks(self.key, msg_id, now, body)}
        try:
            if self._conn is None:
                self._conn = http.client.HTTPConnection(*self.address, timeout=10)
            self._conn.request("POST", self.path, body=body, headers=headers)
            response = self._conn.getresponse()
            data = response.read()
            if response.getheader("Connection", "").lower() == "close":
                self._close()
            return response.status, data
        except (OSError, http.client.HTTPException) as exc:
            self._close()
            return 0, repr(exc).encode()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class TopicReader:
    """Reads every partition of a topic from the start (no group), keeping what it read."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "fault-reader",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        metadata = self.consumer.list_topics(topic, timeout=10).topics[topic]
        self.partitions = sorted(metadata.partitions)
        self.consumer.assign([TopicPartition(topic, p, 0) for p in self.partitions])
        self.messages: list[Message] = []
        self.ends = dict.fromkeys(self.partitions, 0)  # next offset after the last record read

    def poll(self) -> None:
        """Read what is there now (stops at the first empty poll)."""
        while True:
            batch = [m for m in self.consumer.consume(1000, 0.2) if m.error() is None]
            if not batch:
                return
            for msg in batch:
                self.messages.append(msg)
                self.ends[msg.partition() or 0] = max(self.ends[msg.partition() or 0], (msg.offset() or 0) + 1)

    def close(self) -> None:
        self.consumer.close()


class GroupOffsets:
    """The committed offsets of a consumer group (read only: this consumer never joins)."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})

    def committed(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        offsets = self.consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: max(tp.offset, 0) for tp in offsets}

    def close(self) -> None:
        self.consumer.close()


def headers_of(msg: Message) -> dict[str, str]:
    raw = msg.headers() or []
    pairs = list(raw.items()) if isinstance(raw, dict) else list(raw)
    return {k: v.decode(errors="replace") if isinstance(v, bytes) else str(v or "") for k, v in pairs}


def int_header(headers: dict[str, Any], name: str) -> int:
    try:
        return int(headers.get(name, "-1"))
    except ValueError:
        return -1

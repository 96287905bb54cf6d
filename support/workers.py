"""`router route` as real processes, and reading a group's progress from the broker."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from support.services import wait_for
from tools.dev.embedded.procs import ChildProcess


class WorkerProcess:
    """One `router route` (or, with ``kind="deliver"``, `router deliver`) process with its own log file."""

    def __init__(self, env: dict[str, str], integrations: Path, schemas: Path, group: str, log: Path,
                 kind: str = "route") -> None:
        self.log = log
        extra = ["--batch-size", "500"] if kind == "route" else []
        self.child = ChildProcess(f"{kind} worker ({log.name})",
                                  [sys.executable, "-m", "router", kind, "--integrations", str(integrations),
                                   "--schemas", str(schemas), "--group", group, *extra], log=log, env=env)
        self.proc = self.child.proc

    def kill(self) -> None:
        """SIGKILL: the crash the worker must survive."""
        self.child.kill()

    def stop(self, deadline_s: float = 60) -> int:
        """SIGTERM and wait: the worker finishes its batch, commits and leaves the group."""
        if not self.child.stop(grace_s=deadline_s):
            raise AssertionError(f"worker did not stop within {deadline_s}s; log: {self.log}")
        return self.proc.returncode


def worker_env(bootstrap: str, redis_url: str, registry_url: str, prefix: str) -> dict[str, str]:
    return {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "REDIS_URL": redis_url,
            "SCHEMA_REGISTRY_URL": registry_url, "ROUTER_REDIS_KEY_PREFIX": prefix,
            "ROUTER_KAFKA_SESSION_TIMEOUT_MS": "6000", "PYTHONUNBUFFERED": "1"}


def committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Sum of the group's committed offsets on ``topic`` (= records finished, on a fresh topic)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in offsets)


def wait_committed(bootstrap: str, group: str, topic: str, partitions: int, at_least: int,
                   deadline_s: float, procs: list[WorkerProcess] | None = None) -> int:
    """Wait until the group has committed ``at_least`` records; fail early if every worker died."""
    def check() -> int | None:
        if procs and all(p.proc.poll() is not None for p in procs):
            logs = "\n".join(p.log.read_text()[-1500:] for p in procs)
            raise AssertionError(f"every worker exited:\n{logs}")
        n = committed_total(bootstrap, group, topic, partitions)
        return n if n >= at_least else None

    return wait_for(check, deadline_s=deadline_s, what=f"{at_least} records committed by {group}", interval_s=0.2)

"""Reproduce and measure the Tansu consumer-group wedge with bare confluent-kafka consumers.

On the embedded broker (Tansu 0.6.0) a group can wedge when all of its members disappear within
a few seconds of each other: every new member gets "JoinGroup generation N, leader X" and then
"SyncGroup: rebalance in progress" for minutes. This script reproduces that with no project code
in the consumers (only the broker is started with ``tools.dev.embedded.broker.start_broker``).

Per round, in a group of its own: start two members (one subprocess each), wait until both hold
a non-empty assignment, make both disappear together (``--mode kill``: SIGKILL both; ``--mode
close``: both call ``close()`` at once), start ``--fresh`` new members (1 or 2) and time how long
until one holds a non-empty assignment. None within ``--cap`` seconds: ``stuck``; an assignment
that never covers every partition within the cap: ``partial``. ``--variant`` picks the client
settings (see VARIANTS; stagger* vary the disappearance instead). docs/embedded-broker.md has
the figures.

    .venv/bin/python -m bench.tansu_group_wedge --rounds 4 --variant baseline --mode close

The last line is ``RESULT variant=... mode=... rounds=N stuck=K median_recover_s=...``, where
``recover_s`` runs from the disappearance to the fresh member's assignment (it includes any
deliberate wait, see ``waitsession``), ``join_s`` from the fresh member's start, ``full_s`` from the
disappearance to all partitions assigned.
Everything listens on and connects to 127.0.0.1 only. The run stops every process it started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

PARTITIONS = 3
RECORDS = 300

# Variants: consumer config overrides on top of the project's consumer_config (router/kafka.py),
# plus how the replacement member joins.
BASE_SESSION_MS = 6000  # what tests/conftest.py uses


def project_config(bootstrap: str, group: str, session_ms: int = BASE_SESSION_MS) -> dict:
    """router.kafka.consumer_config, spelled out so the consumers run no project code."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": session_ms,
        "heartbeat.interval.ms": max(500, session_ms // 6),
        "partition.assignment.strategy": "cooperative-sticky",
        "fetch.message.max.bytes": 2_000_000,
    }


VARIANTS: dict[str, dict] = {
    # name: {"overrides": {...}, "session_ms": int, "static": bool, "new_group": bool, "wait_s": float}
    "baseline": {},
    "static": {"static": True},
    "range": {"overrides": {"partition.assignment.strategy": "range"}},
    "roundrobin": {"overrides": {"partition.assignment.strategy": "roundrobin"}},
    "session3000": {"session_ms": 3000},
    "maxpoll10s": {"overrides": {"max.poll.interval.ms": 10000}},
    "maxpoll30s": {"overrides": {"max.poll.interval.ms": 30000}},
    "range_maxpoll10s": {"overrides": {"partition.assignment.strategy": "range", "max.poll.interval.ms": 10000}},
    "newgroup": {"new_group": True},
    "waitsession": {"wait_s": BASE_SESSION_MS / 1000 + 1.0},
    # not a client setting: the two members disappear gap_s apart instead of together
    "stagger1s": {"gap_s": 1.0},
    "stagger4s": {"gap_s": 4.0},
}


# ---------------------------------------------------------------------------------------------
# The member: a bare confluent-kafka consumer in its own process.
# stdout protocol (one JSON object a line): {"ev": "assigned", "parts": [...], "t": wall}
# stdin: a line "close" makes it call close() and exit.
# ---------------------------------------------------------------------------------------------


def member_main(conf_json: str, topic: str) -> int:
    from confluent_kafka import Consumer

    conf = json.loads(conf_json)
    close_now = threading.Event()

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "close":
                close_now.set()
                return
        close_now.set()  # parent went away

    threading.Thread(target=read_stdin, daemon=True).start()

    def say(**kw: object) -> None:
        print(json.dumps({**kw, "t": time.time()}), flush=True)

    consumer = Consumer(conf)
    last: list = []

    def report(c: Consumer, _parts: list[Any] | None) -> None:  # on_assign / on_revoke: report the whole assignment
        nonlocal last
        now = sorted(p.partition for p in c.assignment())
        if now != last:
            last = now
            say(ev="assigned", parts=now)

    consumer.subscribe([topic], on_assign=report, on_revoke=report, on_lost=report)
    say(ev="started")
    try:
        while not close_now.is_set():
            consumer.poll(0.1)
            report(consumer, None)
    finally:
        t0 = time.time()
        consumer.close()
        say(ev="closed", close_s=round(time.time() - t0, 3))
    return 0


# ---------------------------------------------------------------------------------------------
# The parent.
# ---------------------------------------------------------------------------------------------


class Member:
    """One member subprocess and what it has reported."""

    def __init__(self, name: str, conf: dict, topic: str, logdir: Path):
        self.name = name
        self.parts: list[int] = []
        self.assigned_at: float | None = None  # first non-empty assignment, wall clock
        self.closed = threading.Event()
        self.started_at = time.time()
        self.log_path = logdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in reap()
        from router.procs import die_with_parent  # imported here, not in the forked child

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.tansu_group_wedge", "--member", json.dumps(conf), topic],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=Path(__file__).resolve().parent.parent,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - SIGKILL with the parent: no orphans
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if msg["ev"] == "assigned":
                self.parts = msg["parts"]
                if msg["parts"] and self.assigned_at is None:
                    self.assigned_at = msg["t"]
            elif msg["ev"] == "closed":
                self.closed.set()

    def send_close(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"close\n")
            self.proc.stdin.flush()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)

    def reap(self, grace_s: float = 5.0) -> None:
        """Ask it to close, wait a little, then SIGKILL; always waits for the process."""
        if self.proc.poll() is None:
            self.send_close()
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.kill()
                self.proc.wait(10)
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        self._log.close()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def sync_errors(self) -> int:
        """How many 'rebalance in progress' SyncGroup answers its debug log (debug=cgrp) shows."""
        return sum(
            1
            for line in self.log_text().splitlines()
            if "SyncGroup response" in line and "rebalance in progress" in line
        )

    def member_ids(self) -> set[str]:
        return set(re.findall(r"my MemberId (\S+?),", self.log_text()))

    def last_leader(self) -> str | None:
        found = re.findall(
            r"JoinGroup response: GenerationId (-?\d+), Protocol \S*, LeaderId (\S+?)(?: \(me\))?,", self.log_text()
        )
        return found[-1][1] if found else None


def wait_for(pred: Callable[[], object], deadline_s: float) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


def seed_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics(
        [
            NewTopic(
                topic,
                num_partitions=PARTITIONS,
                replication_factor=1,
                config={"retention.ms": str(3600 * 1000), "cleanup.policy": "delete"},
            )
        ],
        request_timeout=20,
    )
    for f in fut.values():
        f.result(20)
    prod = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(RECORDS):
        prod.produce(topic, key=str(i).encode(), value=b"x" * 100, partition=i % PARTITIONS)
    if prod.flush(20) != 0:
        raise RuntimeError("records not delivered")


def run_round(idx: int, args: argparse.Namespace, bootstrap: str, topic: str, logdir: Path) -> dict:
    v = VARIANTS[args.variant]
    run_tag = uuid.uuid4().hex[:6]
    group = f"wedge-{args.variant}-{args.mode}-{run_tag}-{idx}"
    session_ms = int(v.get("session_ms", args.session_ms))

    def conf(g: str, slot: int) -> dict:
        c = project_config(bootstrap, g, session_ms)
        c.update(v.get("overrides", {}))
        if v.get("static"):
            c["group.instance.id"] = f"{g}-slot-{slot}"
        if args.debug:
            c["debug"] = "cgrp"
        return c

    members: list[Member] = []
    out: dict = {"round": idx, "group": group}
    try:
        a = Member(f"r{idx}-a", conf(group, 0), topic, logdir)
        b = Member(f"r{idx}-b", conf(group, 1), topic, logdir)
        members += [a, b]
        t0 = time.monotonic()
        both = wait_for(lambda: bool(a.parts) and bool(b.parts), args.form_deadline)
        out["form_s"] = round(time.monotonic() - t0, 1)
        if not both:
            out["status"] = "noform"  # the pair never split the partitions: not a wedge measurement
            out["parts"] = (a.parts, b.parts)
            return out
        time.sleep(args.settle)  # let both sit in a stable generation for a moment
        gone_at = time.time()
        gap_s = float(v.get("gap_s", 0.0))
        if args.mode == "kill":
            a.kill()
            time.sleep(gap_s)
            b.kill()
        else:
            a.send_close()
            time.sleep(gap_s)
            b.send_close()
            wait_for(lambda: a.closed.is_set() and b.closed.is_set(), 15)
        for m in (a, b):
            with contextlib.suppress(subprocess.TimeoutExpired):
                m.proc.wait(15)
        wait_s = float(v.get("wait_s", 0.0))
        if wait_s:
            time.sleep(max(0.0, gone_at + wait_s - time.time()))
        new_group = f"{group}-fresh" if v.get("new_group") else group
        fresh = [Member(f"r{idx}-c{k}", conf(new_group, k), topic, logdir) for k in range(args.fresh)]
        members += fresh
        c = fresh[0]
        fresh_start = min(m.started_at for m in fresh)

        def first() -> float | None:
            times = [m.assigned_at for m in fresh if m.assigned_at is not None]
            return min(times) if times else None

        full_at: list[float] = []

        def covered() -> bool:
            if len({p for m in fresh for p in m.parts}) == PARTITIONS:
                full_at.append(time.time())
                return True
            return False

        got = wait_for(lambda: first() is not None, args.cap)
        full = got and wait_for(covered, max(0.0, fresh_start + args.cap - time.time()))
        if got:
            t1 = first()
            assert t1 is not None
            out["status"] = "ok" if full else "partial"
            out["recover_s"] = round(t1 - gone_at, 2)
            out["join_s"] = round(t1 - fresh_start, 2)
            out["full_s"] = round(full_at[0] - gone_at, 2) if full else None
            out["parts"] = [m.parts for m in fresh]
        else:
            out["status"] = "stuck"
            out["recover_s"] = None
            out["join_s"] = None
            out["full_s"] = None
        if args.debug:  # the wedge's signature: SyncGroup refused while the leader is a departed member
            out["syncgroup_refused"] = c.sync_errors()
            leader = c.last_leader()
            gone = a.member_ids() | b.member_ids()
            out["leader"] = "none" if leader is None else ("departed" if leader in gone else "live")
        return out
    finally:
        for m in members:
            m.reap()


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--member"]:
        return member_main(argv[1], argv[2])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--variant", choices=sorted(VARIANTS), default="baseline")
    p.add_argument("--mode", choices=["kill", "close"], default="close", help="how both members disappear")
    p.add_argument("--cap", type=float, default=45.0, help="seconds after which the fresh member counts as stuck")
    p.add_argument(
        "--fresh",
        type=int,
        default=1,
        choices=[1, 2],
        help="fresh members started after the disappearance (static: slots 0..N-1)",
    )
    p.add_argument("--session-ms", type=int, default=BASE_SESSION_MS)
    p.add_argument("--form-deadline", type=float, default=40.0, help="seconds the first pair may take to form")
    p.add_argument("--settle", type=float, default=1.0, help="seconds the pair stays formed before disappearing")
    p.add_argument("--deadline", type=float, default=110.0, help="start no new round after this many seconds")
    p.add_argument(
        "--debug",
        action="store_true",
        help="librdkafka debug=cgrp into the member logs; count SyncGroup REBALANCE_IN_PROGRESS",
    )
    p.add_argument("--keep-logs", action="store_true", help="keep the member and broker logs (path printed)")
    args = p.parse_args(argv)

    from tools.dev.embedded.broker import start_broker

    logdir = Path(tempfile.mkdtemp(prefix="tansu-wedge-"))
    started = time.monotonic()
    child, bootstrap = start_broker(log=logdir / "broker.log")
    results: list[dict] = []
    interrupted = False
    try:
        topic = f"wedge-{uuid.uuid4().hex[:8]}"
        seed_topic(bootstrap, topic)
        print(
            f"# broker {bootstrap} variant={args.variant} mode={args.mode} cap={args.cap:.0f}s logs={logdir}",
            flush=True,
        )
        for i in range(args.rounds):
            if time.monotonic() - started > args.deadline:
                print(f"# deadline {args.deadline:.0f}s reached: {i} rounds run", flush=True)
                break
            r = run_round(i, args, bootstrap, topic, logdir)
            results.append(r)
            print("round " + " ".join(f"{k}={v}" for k, v in r.items() if k != "group"), flush=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        child.stop()
        if not args.keep_logs:
            shutil.rmtree(logdir, ignore_errors=True)

    measured = [r for r in results if r["status"] in ("ok", "partial", "stuck")]
    stuck = sum(1 for r in measured if r["status"] == "stuck")
    partial = sum(1 for r in measured if r["status"] == "partial")
    rec = [r["recover_s"] for r in measured if r["status"] != "stuck"]
    join = [r["join_s"] for r in measured if r["status"] != "stuck"]
    full = [r["full_s"] for r in measured if r["status"] == "ok"]
    med = f"{statistics.median(rec):.1f}" if rec else "na"
    medj = f"{statistics.median(join):.1f}" if join else "na"
    mx = f"{max(rec):.1f}" if rec else "na"
    medf = f"{statistics.median(full):.1f}" if full else "na"
    noform = len(results) - len(measured)
    print(
        f"RESULT variant={args.variant} mode={args.mode} fresh={args.fresh} rounds={len(measured)} stuck={stuck} "
        f"median_recover_s={med} max_recover_s={mx} median_join_s={medj} partial={partial} "
        f"median_full_s={medf} noform={noform} cap_s={args.cap:.0f}",
        flush=True,
    )
    return 130 if interrupted else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

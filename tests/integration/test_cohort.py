"""`router cohort sync` end to end: broker, Redis, registry, route and delivery workers, partner simulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from confluent_kafka import Consumer, TopicPartition

from producers.cohorts.state import store_base
from producers.cohorts.sync import CohortSync, SyncRequest, SyncResult
from router import redisconn
from router.settings import Settings
from support.delivering import Partner, partner_sim, running_deliverer
from support.routing import ROOT, Topology, headers_of, make_topology, read_all, running_worker
from support.services import wait_for
from support.workers import worker_env


def cohort_spec(name: str, audience: str, destination: str, url: str) -> str:
    """integrations/vip-cohort-to-braze.yaml with its own audience and destination, delivering to ``url``."""
    return f"""name: {name}
version: 1
source:
  topic: cohort.{audience}
  format: avro
  event_id: change_id
  entity_key: audience
dedupe: {{ttl: 48h}}
mapping:
  schema: com.example.braze.CohortImport
  fields:
    cohort_id: {{template: "{{tenant}}:{{audience}}", required: true}}
    cohort_changes:
      each: $event
      required: true
      fields:
        user_ids: {{from: user_ids, required: true}}
        should_remove: {{from: should_remove, required: true}}
destination:
  name: {destination}
  http:
    url: "{url}"
    batch: {{max_records: 1}}
    timeout: 5s
    auth: {{type: none}}
    retry: {{max_age: 4h, base: 10ms, cap: 1s}}
"""


@dataclass
class Cohort:
    """One test's audience, destination, partner and services."""

    name: str
    settings: Settings
    topology: Topology
    partner: Partner
    tmp: Path

    @property
    def audience(self) -> str:
        return f"{self.name}-aud"

    @property
    def destination(self) -> str:
        return f"{self.name}-d"

    def snapshot(self, ids: list[str] | str, stem: str = "snap") -> Path:
        path = self.tmp / f"{stem}.txt"
        path.write_text(ids if isinstance(ids, str) else "".join(f"{i}\n" for i in ids))
        return path

    def request(self, snapshot: Path, **kw: object) -> SyncRequest:
        return SyncRequest(audience=self.audience, snapshot=str(snapshot), destination=self.destination,
                           tenant="acme", schemas=self.topology.schemas, **kw)  # type: ignore[arg-type]

    def sync(self, ids: list[str], **kw: object) -> SyncResult:
        sync = CohortSync(self.settings)
        try:
            return sync.run(self.request(self.snapshot(ids), **kw))
        finally:
            sync.close()

    def membership(self) -> set[str]:
        """Replay the partner's accepted imports in order."""
        members: set[str] = set()
        for entry in self.partner.ledger(self.destination)["records"]:
            for change in entry["record"]["cohort_changes"]:
                ids = set(change["user_ids"])
                members = members - ids if change["should_remove"] else members | ids
        return members

    def wait_membership(self, expected: set[str], deadline_s: float = 120) -> None:
        def check() -> bool:
            return self.membership() == expected

        try:
            wait_for(check, deadline_s=deadline_s, what="the destination to hold the snapshot")
        except AssertionError:
            got = self.membership()
            raise AssertionError(f"missing {len(expected - got)} e.g. {sorted(expected - got)[:3]}, "
                                 f"extra {len(got - expected)} e.g. {sorted(got - expected)[:3]}") from None

    def env(self, registry_url: str) -> dict[str, str]:
        return worker_env(self.settings.kafka_bootstrap_servers or "", self.settings.redis_url or "", registry_url,
                          self.settings.redis_key_prefix)

    def cli(self, registry_url: str, *args: str) -> list[str]:
        return [sys.executable, "-m", "router", "cohort", "sync", "--audience", self.audience,
                "--destination", self.destination, "--tenant", "acme", "--schemas", str(self.topology.schemas), *args]


@contextmanager
def pipeline(settings: Settings, registry_url: str, tmp_path: Path, name: str) -> Iterator[Cohort]:
    """A partner simulator, a route worker and a delivery worker for one unique audience."""
    settings = settings.replace(schema_registry_url=registry_url, redis_key_prefix=f"{name}:")
    with partner_sim(tmp_path) as partner:
        audience, destination = f"{name}-aud", f"{name}-d"
        topology = make_topology(tmp_path, name, {"cohort": cohort_spec(name, audience, destination,
                                                                        f"{partner.url}/v1/{destination}")})
        cohort = Cohort(name, settings, topology, partner, tmp_path)
        with running_worker(settings, registry_url, topology, group=f"{name}-route", prefix=f"{name}:"), \
                running_deliverer(settings, registry_url, topology, group=f"{name}-deliver"):
            yield cohort


def users(a: int, b: int) -> list[str]:
    return [f"user-{n:06d}" for n in range(a, b)]


def topic_high(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
                   for p in consumer.list_topics(topic, timeout=5).topics[topic].partitions)
    finally:
        consumer.close()


def test_first_sync_churn_and_no_change(settings: Settings, registry_url: str, tmp_path: Path, name: str) -> None:
    with pipeline(settings, registry_url, tmp_path, name) as c:
        first = users(0, 2500)
        result = c.sync(first)
        assert (result.added, result.removed, result.unchanged, result.records) == (2500, 0, 0, 3)
        c.wait_membership(set(first))

        second = users(300, 2500) + users(5000, 5200)  # 300 leave, 200 join
        result = c.sync(second)
        assert (result.added, result.removed, result.unchanged, result.records) == (200, 300, 2200, 2)
        c.wait_membership(set(second))

        result = c.sync(list(reversed(second)))  # same members, another order
        assert (result.added, result.removed, result.records) == (0, 0, 0)
        assert result.summary().startswith("added=0 removed=0 unchanged=2400 records=0 seconds=")

        records = read_all(c.settings.kafka_bootstrap_servers or "", f"cohort.{c.audience}", expect=5,
                           settle_s=1.0)
    assert len(records) == 5, "the no-change sync published nothing"
    assert {m.key() for m in records} == {c.audience.encode()}, "keyed by audience"
    assert len({m.partition() for m in records}) == 1
    hdrs = headers_of(records[0])
    assert hdrs["router-source"] == "cohort-sync" and hdrs["router-tenant"] == "acme"
    assert hdrs["router-event-id"].startswith(f"{c.audience}-") and hdrs["router-event-id"].endswith(":0")
    assert hdrs["traceparent"].startswith("00-")
    with redis.Redis.from_url(c.settings.redis_url or "") as client:
        stored = client.hgetall(f"{name}:cohort:{c.audience}:{c.destination}:state")
    assert b"meta" in stored and b"part:0" in stored


def test_rate_is_kept_while_delivery_reports_arrive(settings: Settings, registry_url: str, tmp_path: Path,
                                                    name: str) -> None:
    """--rate 10 means ten records a second, however fast the broker acknowledges (a producer poll
    returns at the first delivery report; it published 35-39/s). The broker timestamps of 20
    records must span at least 19 intervals (a slow machine can only make it longer)."""
    with pipeline(settings, registry_url, tmp_path, name) as c:
        result = c.sync(users(0, 20_000), rate=10.0)
        assert result.records == 20
        out = read_all(c.settings.kafka_bootstrap_servers or "", f"cohort.{c.audience}", expect=20)
        stamps = sorted(m.timestamp()[1] for m in out)
        span_s = (stamps[-1] - stamps[0]) / 1000
        assert span_s >= 0.95 * 19 / 10, f"20 records at --rate 10 took {span_s:.2f}s: faster than asked"


def test_killed_mid_publish_then_rerun_reaches_the_snapshot(settings: Settings, registry_url: str, tmp_path: Path,
                                                            name: str) -> None:
    with pipeline(settings, registry_url, tmp_path, name) as c:
        base = users(0, 5000)
        c.sync(base)
        c.wait_membership(set(base))
        # The killed run: 1,000 leave, 30,000 join; throttled so that the kill lands mid-publish.
        killed = users(1000, 5000) + users(100_000, 130_000)
        log = tmp_path / "killed.log"
        topic = f"cohort.{c.audience}"
        before = topic_high(c.settings.kafka_bootstrap_servers or "", topic)
        with open(log, "wb") as out:
            proc = subprocess.Popen(c.cli(registry_url, "--snapshot", str(c.snapshot(killed, "killed")),
                                          "--rate", "10"), stdout=out, stderr=subprocess.STDOUT,
                                    env=c.env(registry_url))
        try:
            wait_for(lambda: topic_high(c.settings.kafka_bootstrap_servers or "", topic) >= before + 4
                     or proc.poll() is not None, deadline_s=60, what="the killed run to publish a few records")
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL, log.read_text()
        with redis.Redis.from_url(c.settings.redis_url or "") as client:
            assert client.exists(f"{name}:cohort:{c.audience}:{c.destination}:pending"), "killed before its commit"
            # The next run's snapshot changed again: some of the killed run's joins left already, some of
            # its leaves came back. Only the journal knows that user-100000.. may be at the destination.
            rerun = users(0, 200) + users(1000, 5000) + users(100_500, 130_000)
            done = subprocess.run(c.cli(registry_url, "--snapshot", str(c.snapshot(rerun, "rerun"))), check=False,
                                  capture_output=True, text=True, env=c.env(registry_url), timeout=120)
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip().splitlines()[-1].startswith("added=")
            c.wait_membership(set(rerun))
            assert not client.exists(f"{name}:cohort:{c.audience}:{c.destination}:pending")


def test_dlq_carry_over_resends_failed_ids(settings: Settings, registry_url: str, tmp_path: Path, name: str) -> None:
    with pipeline(settings, registry_url, tmp_path, name) as c:
        # The partner refuses the import of the second chunk (ids user-001000..user-001999) once.
        c.partner.rules({"destination": c.destination, "status": 400, "times": 1,
                         "match": {"field": "cohort_changes.0.user_ids.0", "equals": "user-001000"}})
        first = users(0, 2500)
        assert c.sync(first).records == 3
        read_all(c.settings.kafka_bootstrap_servers or "", f"delivery.{c.destination}.dlq", expect=1)
        c.wait_membership(set(first) - set(users(1000, 2000)))

        result = c.sync(first)  # same snapshot: only the DLQ'd ids go again
        assert (result.added, result.removed, result.records, result.carried_records) == (1000, 0, 1, 1)
        c.wait_membership(set(first))

        # A refused remove is sent again too, and the cursor does not re-read what was carried over.
        c.partner.rules({"destination": c.destination, "status": 400, "times": 1,
                         "match": {"field": "cohort_changes.0.should_remove", "equals": True}})
        left = users(0, 2400)
        assert c.sync(left).removed == 100
        read_all(c.settings.kafka_bootstrap_servers or "", f"delivery.{c.destination}.dlq", expect=2)
        result = c.sync(left)
        assert (result.added, result.removed, result.carried_records) == (0, 100, 1)
        c.wait_membership(set(left))
        assert c.sync(left).records == 0


def test_sync_keeps_its_state_on_either_redis_whatever_the_names(settings_each_redis: Settings, registry_url: str,
                                                                 tmp_path: Path, name: str) -> None:
    """The diff is against the state the last run left in Redis (standalone, or a cluster: its
    lease, journal and state keys RENAMEd in one slot), with braces in the destination's name."""
    settings = settings_each_redis.replace(schema_registry_url=registry_url, redis_key_prefix=f"{name}:")
    audience, destination = f"{name}-aud", "br{a}ze}{-" + name
    sync = CohortSync(settings)
    try:
        def run(ids: list[str], stem: str) -> SyncResult:
            snapshot = tmp_path / f"{stem}.txt"
            snapshot.write_text("".join(f"{i}\n" for i in ids))
            return sync.run(SyncRequest(audience=audience, snapshot=str(snapshot), destination=destination,
                                        schemas=ROOT / "schemas" / "avro"))

        result = run(users(0, 2500), "first")
        assert (result.added, result.removed, result.unchanged, result.records) == (2500, 0, 0, 3)
        result = run(users(300, 2500) + users(5000, 5200), "churn")
        assert (result.added, result.removed, result.unchanged, result.records) == (200, 300, 2200, 2)
        assert run(list(reversed(users(300, 2500) + users(5000, 5200))), "same").records == 0
    finally:
        sync.close()
    read_all(settings.kafka_bootstrap_servers or "", f"cohort.{audience}", expect=5, settle_s=0.5)
    client = redisconn.connect(settings.redis_url or "")
    try:
        base = store_base(settings.redis_key_prefix, audience, destination, redisconn.clustered(client))
        assert client.hexists(f"{base}:state", "meta"), "the state is where the store keeps it"
        assert not client.exists(f"{base}:pending") and not client.exists(f"{base}:lock")
    finally:
        client.close()


def test_invalid_lines_rejected_or_skipped(settings_each_redis: Settings, registry_url: str, tmp_path: Path,
                                           name: str) -> None:
    settings = settings_each_redis.replace(schema_registry_url=registry_url, redis_key_prefix=f"{name}:")
    audience = f"{name}-aud"
    snapshot = tmp_path / "bad.txt"
    snapshot.write_text("user-1\n\nuser-2\nbad\x07id\n" + "x" * 300 + "\nuser-3\n")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
           "REDIS_URL": settings.redis_url or "", "SCHEMA_REGISTRY_URL": registry_url,
           "ROUTER_REDIS_KEY_PREFIX": f"{name}:"}
    argv = [sys.executable, "-m", "router", "cohort", "sync", "--audience", audience, "--snapshot", str(snapshot)]
    rejected = subprocess.run(argv, check=False, capture_output=True, text=True, env=env, timeout=120)
    assert rejected.returncode == 2
    assert "3 invalid line(s)" in rejected.stderr
    assert "line 2: empty; line 4: control character U+0007; line 5: 300 bytes" in rejected.stderr
    assert "nothing was published" in rejected.stderr
    probe = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers or "", "group.id": "probe"})
    try:
        assert f"cohort.{audience}" not in probe.list_topics(timeout=10).topics
    finally:
        probe.close()

    skipped = subprocess.run([*argv, "--on-invalid", "skip"], check=False, capture_output=True, text=True, env=env,
                             timeout=120)
    assert skipped.returncode == 0, skipped.stderr
    assert "skipped 3 invalid line(s)" in skipped.stderr
    assert skipped.stdout.strip().splitlines()[-1].startswith("added=3 removed=0 unchanged=0 records=1 seconds=")
    [record] = read_all(settings.kafka_bootstrap_servers or "", f"cohort.{audience}", expect=1)
    assert headers_of(record)["router-tenant"] == "default"
    # A script reads the result as JSON (the same run again: nothing changed).
    again = subprocess.run([*argv, "--on-invalid", "skip", "--json"], check=False, capture_output=True, text=True,
                           env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout.strip().splitlines()[-1])
    assert {k: result[k] for k in ("added", "removed", "unchanged", "records", "skipped")} == {
        "added": 0, "removed": 0, "unchanged": 3, "records": 0, "skipped": 3}


def test_every_repeats_with_a_fresh_read_until_sigterm(settings: Settings, registry_url: str, tmp_path: Path,
                                                       name: str) -> None:
    snapshot = tmp_path / "every.txt"
    snapshot.write_text("".join(f"{u}\n" for u in users(0, 10)))
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
           "REDIS_URL": settings.redis_url or "", "SCHEMA_REGISTRY_URL": registry_url,
           "ROUTER_REDIS_KEY_PREFIX": f"{name}:"}
    out = tmp_path / "every.out"

    def summaries() -> list[str]:
        return [ln for ln in out.read_text().splitlines() if ln.startswith("added=")]

    with open(out, "wb") as stdout:
        proc = subprocess.Popen([sys.executable, "-m", "router", "cohort", "sync", "--audience", f"{name}-aud",
                                 "--snapshot", str(snapshot), "--every", "1s"], stdout=stdout,
                                stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(summaries, deadline_s=60, what="the first run")
        (tmp_path / "next.txt").write_text("".join(f"{u}\n" for u in users(5, 12)))
        os.replace(tmp_path / "next.txt", snapshot)  # atomically: a run may be reading it
        wait_for(lambda: any(s.startswith("added=2 removed=5 unchanged=5 records=2") for s in summaries()),
                 deadline_s=60, what="a run that saw the new snapshot")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, out.read_text()
    assert summaries()[0].startswith("added=10 removed=0 unchanged=0 records=1")

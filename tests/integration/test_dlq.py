"""`router dlq`: a spec bug fills the DLQ, the spec is fixed, replay delivers exactly once.

Real broker, Redis, schema registry, route and delivery workers and the partner simulator. The
simulator's ledger is the judge of "exactly once": each idempotency key accepted once, no
duplicate requests for it, and as many requests as records.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from consumers.deliver.payload import idempotency_key
from router.dlq.filters import DlqFilter
from router.dlq.read import open_reader, read_to_end
from router.dlq.replay import ReplayRequest, ReplaySummary, replay
from router.kafka import admin_client, ensure_topics
from router.settings import Settings
from support.delivering import Partner, http_spec, partner_sim, running_deliverer
from support.routing import (
    Topology,
    headers_of,
    json_records,
    make_topology,
    produce,
    read_all,
    running_worker,
    zendesk_event,
)
from support.services import wait_for
from support.workers import committed_total

PARTITIONS = 3
RIGHT = "title: {from: data.ticket.title, required: true}"
BUG = "title: {from: data.ticket.subject, required: true}"  # events carry data.ticket.title


def gateway_records(events: list[dict[str, Any]], tenant: str = "acme"
                    ) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """Ingest records as the gateway writes them: tenant, source, event id and received-at headers."""
    out: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
    for key, value, headers in json_records(events, tenant=tenant):
        event_id = orjson.loads(value)["event_id"]
        out.append((key, value, [*headers, ("router-source", b"zendesk"), ("router-event-id", event_id.encode()),
                                 ("router-received-at", str(int(time.time() * 1000)).encode())]))
    return out


def processed(worker: Any, n: int) -> bool:
    totals = worker.outcomes.totals
    return sum(totals[k] for k in ("routed", "duplicate", "stale", "ignored", "dlq")) >= n


def _specs(name: str, url: str, *, bug: bool) -> dict[str, str]:
    text = http_spec(name, name, f"{name}-d", url)
    assert RIGHT in text
    return {"a": text.replace(RIGHT, BUG) if bug else text}


def _dead_letter(settings: Settings, registry_url: str, topo: Topology, name: str,
                 records: Sequence[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]) -> None:
    """Route ``records`` with the topology's (buggy) spec; wait until each one is in the DLQ."""
    with running_worker(settings, registry_url, topo, group=f"{name}-route", prefix=f"{name}:") as worker:
        produce(settings.kafka_bootstrap_servers or "", topo.source_topic, records)
        wait_for(lambda: worker.outcomes.totals["dlq"] >= len(records), deadline_s=90,
                 what=f"{len(records)} records dead-lettered")
        assert worker.outcomes.totals["routed"] == 0


def _exactly_once(partner: Partner, dest: str, keys: set[str]) -> bool:
    ledger = partner.ledger(dest)
    return set(ledger["accepted"]) == keys


def _assert_ledger_exactly_once(partner: Partner, dest: str, keys: set[str]) -> None:
    ledger = partner.ledger(dest)
    assert set(ledger["accepted"]) == keys
    assert set(ledger["accepted"].values()) == {1}
    assert ledger["duplicates"] == {}, "no idempotency key reached the partner twice"
    assert ledger["requests"] == len(keys), "one request per record, no re-sends"


def _cursor_total(bootstrap: str, request: ReplayRequest, partitions: int = PARTITIONS) -> int:
    return committed_total(bootstrap, request.cursor_group, request.topic, partitions)


def _count(bootstrap: str, topic: str) -> int:
    """Records in ``topic`` now (read to the end, assign only)."""
    consumer = open_reader(Settings(kafka_bootstrap_servers=bootstrap))
    try:
        return sum(1 for _ in read_to_end(consumer, [topic]))
    finally:
        consumer.close()


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "router", "dlq", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def _summary(stdout: str) -> dict[str, str]:
    last = stdout.strip().splitlines()[-1]
    return dict(part.split("=", 1) for part in last.split())


def test_spec_bug_then_fix_then_replay_delivers_exactly_once(settings: Settings, registry_url: str,
                                                             tmp_path: Path, name: str) -> None:
    bootstrap = settings.kafka_bootstrap_servers or ""
    n = 8
    events = [zendesk_event(f"e{i}", i, 1) for i in range(n)]
    keys = {idempotency_key("acme", name, f"e{i}") for i in range(n)}
    dest, dlq = f"{name}-d", f"ingest.{name}.dlq"
    with partner_sim(tmp_path) as partner:
        url = f"{partner.url}/v1/{dest}"
        broken = make_topology(tmp_path, name, _specs(name, url, bug=True))
        _dead_letter(settings, registry_url, broken, name, gateway_records(events))
        dead = read_all(bootstrap, dlq, expect=n)
        assert {headers_of(m)["router-error-code"] for m in dead} == {"map.required_missing"}

        # Replayed while the bug is still there: the records come back, attempts 2, history kept.
        request = ReplayRequest(topic=dlq)
        with running_worker(settings, registry_url, broken, group=f"{name}-route", prefix=f"{name}:") as worker:
            first = replay(settings, request)
            assert (first.replayed, first.skipped, first.failed) == (n, 0, 0), "only the records there at the start"
            wait_for(lambda: worker.outcomes.totals["dlq"] == n, deadline_s=60, what="the replays to fail again")
        again = _new_dlq_records(bootstrap, dlq, dead, n)
        by_event = {headers_of(m)["router-event-id"]: m for m in dead}
        for m in again:
            hdrs, before = headers_of(m), headers_of(by_event[headers_of(m)["router-event-id"]])
            assert hdrs["router-attempts"] == "2"
            assert hdrs["router-replay-count"] == "1"
            assert hdrs["router-first-failed-at"] == before["router-first-failed-at"]
            assert hdrs["router-original-topic"] == f"ingest.{name}"
            assert m.key() == by_event[hdrs["router-event-id"]].key()
            assert m.value() == by_event[hdrs["router-event-id"]].value()

        # The spec is fixed; the replay (from the cursor: the records that failed again) delivers each once.
        fixed = make_topology(tmp_path, name, _specs(name, url, bug=False))
        with running_worker(settings, registry_url, fixed, group=f"{name}-route", prefix=f"{name}:") as worker, \
                running_deliverer(settings, registry_url, fixed, group=f"{name}-deliver"):
            second = replay(settings, request)
            assert (second.replayed, second.skipped, second.failed) == (n, 0, 0)
            wait_for(lambda: _exactly_once(partner, dest, keys), deadline_s=90, what="every key delivered")
            _assert_ledger_exactly_once(partner, dest, keys)
            assert worker.outcomes.totals["routed"] == n

            # The same replay again: the cursor is at the end, nothing is produced.
            assert replay(settings, request).replayed == 0
            # Forced from the start: all 2n DLQ records are produced again; dedupe drops every one.
            forced = replay(settings, ReplayRequest(topic=dlq, from_start=True))
            assert forced.replayed == 2 * n
            wait_for(lambda: worker.outcomes.totals["duplicate"] == 2 * n, deadline_s=60,
                     what="the forced replays counted as duplicates")
            assert worker.outcomes.totals["routed"] == n
            assert worker.outcomes.totals["dlq"] == 0
        _assert_ledger_exactly_once(partner, dest, keys)

    # Replayed records on the ingest topic: original key and value, error headers gone.
    replayed = [m for m in read_all(bootstrap, f"ingest.{name}", expect=n + n + n + 2 * n)
                if "router-replay-count" in headers_of(m)]
    assert len(replayed) == 4 * n
    originals = {m.key(): m.value() for m in dead}
    for m in replayed:
        hdrs = headers_of(m)
        assert originals[m.key()] == m.value()
        assert not {"router-error-code", "router-error-message", "router-error-stage",
                    "router-consumer-group"} & set(hdrs)
        assert hdrs["router-tenant"] == "acme"
        assert hdrs["router-integration"] == name


def _new_dlq_records(bootstrap: str, dlq: str, before: list[Any], n: int) -> list[Any]:
    seen = {(m.partition(), m.offset()) for m in before}
    every = read_all(bootstrap, dlq, expect=len(before) + n)
    new = [m for m in every if (m.partition(), m.offset()) not in seen]
    assert len(new) == n
    return new


def test_filters_select_exactly_and_dry_run_writes_nothing(settings: Settings, registry_url: str, tmp_path: Path,
                                                           name: str) -> None:
    bootstrap = settings.kafka_bootstrap_servers or ""
    dlq = f"ingest.{name}.dlq"
    topo = make_topology(tmp_path, name, _specs(name, "http://127.0.0.1:9/unused", bug=True))
    wave1 = (gateway_records([zendesk_event("a1", 1, 1), zendesk_event("a2", 2, 1)], tenant="acme")
             + gateway_records([zendesk_event("g1", 3, 1)], tenant="globex")
             + [(b"9", b'{"event_id": "broken', [("router-tenant", b"acme")])])  # decode.invalid_json
    _dead_letter(settings, registry_url, topo, name, wave1)
    newest = max(m.timestamp()[1] for m in read_all(bootstrap, dlq, expect=4))
    wait_for(lambda: time.time() * 1000 > newest + 1, deadline_s=5, what="the clock to pass wave 1")
    since = newest + 1
    _dead_letter(settings, registry_url, topo, name, gateway_records([zendesk_event("g2", 4, 1)], tenant="globex"))

    def shown(*opts: str) -> list[str]:
        result = _cli(settings, "show", dlq, "--json", "--limit", "0", *opts)
        assert result.returncode == 0, result.stderr
        rows = [orjson.loads(line) for line in result.stdout.splitlines()]
        return sorted(r["headers"].get("router-event-id") or f"no id: {r['value']}" for r in rows)

    assert shown() == ["a1", "a2", "g1", "g2", 'no id: {"event_id": "broken']
    assert shown("--code", "map.required_missing") == ["a1", "a2", "g1", "g2"]
    assert shown("--code", "decode.*") == ['no id: {"event_id": "broken']
    assert shown("--tenant", "globex") == ["g1", "g2"]
    assert shown("--tenant", "acme", "--code", "map.*") == ["a1", "a2"]
    assert shown("--event-id", "a2", "--event-id", "g1") == ["a2", "g1"]
    assert shown("--since", str(since)) == ["g2"]
    assert shown("--until", str(since)) == ["a1", "a2", "g1", 'no id: {"event_id": "broken']
    assert shown("--integration", name, "--tenant", "nobody") == []

    # Dry run: prints exactly the matching records; the destination and the cursor do not move.
    before = _count(bootstrap, f"ingest.{name}")
    dry = _cli(settings, "replay", dlq, "--tenant", "acme", "--dry-run", "--no-progress")
    assert dry.returncode == 0, dry.stderr
    lines = [ln for ln in dry.stdout.splitlines() if ln.startswith("would replay")]
    assert sorted(ln.split("event=")[1].split()[0] for ln in lines) == ["-", "a1", "a2"]
    assert _summary(dry.stdout) == {"replayed": "0", "skipped": "2", "failed": "0", "would_replay": "3",
                                    "dry_run": "true"}
    dry_json = _cli(settings, "replay", dlq, "--tenant", "acme", "--dry-run", "--json")
    assert dry_json.returncode == 0, dry_json.stderr
    doc = orjson.loads(dry_json.stdout)  # stdout is the one JSON object; the per-record lines went to stderr
    assert (doc["would_replay"], doc["skipped"], doc["replayed"], doc["dry_run"]) == (3, 2, 0, True)
    assert dry_json.stderr.count("would replay ") == 3
    request = ReplayRequest(topic=dlq, dlq_filter=DlqFilter.from_options(tenants=["acme"], now_ms=0))
    assert _cursor_total(bootstrap, request) == 0
    assert _count(bootstrap, f"ingest.{name}") == before

    # A real, filtered replay into a scratch topic holds exactly the selected records.
    scratch = f"{name}-scratch"
    ensure_topics(admin_client(settings), [scratch], partitions=PARTITIONS)
    result = _cli(settings, "replay", dlq, "--code", "map.*", "--since", str(since - 10_000_000), "--tenant",
                  "globex", "--to", scratch, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert _summary(result.stdout) == {"replayed": "2", "skipped": "3", "failed": "0"}
    out = read_all(bootstrap, scratch, expect=2, settle_s=1.0)
    assert sorted(headers_of(m)["router-event-id"] for m in out) == ["g1", "g2"]
    again = _cli(settings, "replay", dlq, "--code", "map.*", "--since", str(since - 10_000_000), "--tenant",
                 "globex", "--to", scratch, "--no-progress")
    assert _summary(again.stdout) == {"replayed": "0", "skipped": "0", "failed": "0"}, "the cursor remembers"


def test_interrupted_replay_resumed_delivers_exactly_once(settings: Settings, registry_url: str, tmp_path: Path,
                                                          name: str) -> None:
    bootstrap = settings.kafka_bootstrap_servers or ""
    n = 60
    dest, dlq = f"{name}-d", f"ingest.{name}.dlq"
    events = [zendesk_event(f"e{i}", i, 1) for i in range(n)]
    keys = {idempotency_key("acme", name, f"e{i}") for i in range(n)}
    request = ReplayRequest(topic=dlq)
    with partner_sim(tmp_path) as partner:
        url = f"{partner.url}/v1/{dest}"
        _dead_letter(settings, registry_url, make_topology(tmp_path, name, _specs(name, url, bug=True)), name,
                     gateway_records(events))
        fixed = make_topology(tmp_path, name, _specs(name, url, bug=False))
        with running_worker(settings, registry_url, fixed, group=f"{name}-route", prefix=f"{name}:") as worker, \
                running_deliverer(settings, registry_url, fixed, group=f"{name}-deliver"):
            log = tmp_path / "replay-1.log"
            env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONUNBUFFERED": "1"}
            with open(log, "wb") as out:
                proc = subprocess.Popen([sys.executable, "-m", "router", "dlq", "replay", dlq, "--rate", "20/s",
                                         "--no-progress"], stdout=out, stderr=subprocess.STDOUT, env=env)
            try:
                # Kill it mid-chunk: a chunk committed, and records routed past the cursor (produced, not committed).
                def mid_run() -> bool:
                    assert proc.poll() is None, f"replay exited early: {log.read_text()}"
                    cursor = _cursor_total(bootstrap, request)
                    return cursor >= 10 and worker.outcomes.totals["routed"] > cursor

                wait_for(mid_run, deadline_s=60, what="a committed chunk and uncommitted replays", interval_s=0.02)
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            at_kill = _cursor_total(bootstrap, request)
            assert 0 < at_kill < n, f"not a mid-run kill: cursor at {at_kill} of {n}"

            resumed = _cli(settings, "replay", dlq, "--no-progress")
            assert resumed.returncode == 0, resumed.stderr
            summary = _summary(resumed.stdout)
            assert int(summary["replayed"]) == n - at_kill, "the re-run starts at the cursor"
            wait_for(lambda: _exactly_once(partner, dest, keys), deadline_s=90, what="all 60 keys delivered")
            produced = _count(bootstrap, f"ingest.{name}") - n
            wait_for(lambda: processed(worker, produced), deadline_s=60, what="every replay routed")
            assert worker.outcomes.totals["routed"] == n
            assert worker.outcomes.totals["duplicate"] == produced - n >= 1, "re-produced records were dropped"
        _assert_ledger_exactly_once(partner, dest, keys)


def test_a_record_without_original_topic_is_reported_failed(settings: Settings, tmp_path: Path, name: str) -> None:
    bootstrap = settings.kafka_bootstrap_servers or ""
    dlq = f"{name}.dlq"
    ensure_topics(admin_client(settings), [dlq, name], partitions=1)
    produce(bootstrap, dlq, [(b"k", b"{}", [("router-error-code", b"decode.invalid_json")]),
                             (b"k2", b"{}", [("router-original-topic", name.encode())])])
    summary: ReplaySummary = replay(settings, ReplayRequest(topic=dlq))
    assert (summary.replayed, summary.skipped, summary.failed) == (1, 0, 1)
    assert summary.failures[0][0] == f"{dlq}[0]@0"
    assert "router-original-topic" in summary.failures[0][1]
    [msg] = read_all(bootstrap, name, expect=1, settle_s=0.5)
    assert msg.key() == b"k2"
    assert _cursor_total(bootstrap, ReplayRequest(topic=dlq), partitions=1) == 2, "failed records are passed"
    result = _cli(settings, "replay", dlq, "--to", dlq)
    assert result.returncode == 2
    assert "DLQ topic" in result.stderr


def test_ctrl_c_commits_what_was_produced_and_the_rerun_resumes(settings: Settings, tmp_path: Path,
                                                                name: str) -> None:
    bootstrap = settings.kafka_bootstrap_servers or ""
    dlq, dest, n = f"{name}.dlq", name, 40
    ensure_topics(admin_client(settings), [dlq, dest], partitions=PARTITIONS)
    produce(bootstrap, dlq, [(f"k{i}".encode(), f"v{i}".encode(),
                              [("router-original-topic", dest.encode()), ("router-error-code", b"map.type_error")])
                             for i in range(n)])
    request = ReplayRequest(topic=dlq)
    log = tmp_path / "replay.log"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "router", "dlq", "replay", dlq, "--rate", "10/s",
                                 "--no-progress"], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: proc.poll() is None and _cursor_total(bootstrap, request) >= 10, deadline_s=60,
                 what="the first chunk committed", interval_s=0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    first = _summary(log.read_text())
    assert first["interrupted"] == "true"
    replayed = int(first["replayed"])
    assert 10 <= replayed < n
    assert _cursor_total(bootstrap, request) == replayed, "everything produced was committed before exiting"
    rest = _cli(settings, "replay", dlq, "--no-progress")
    assert rest.returncode == 0, rest.stderr
    assert int(_summary(rest.stdout)["replayed"]) == n - replayed
    delivered = read_all(bootstrap, dest, expect=n, settle_s=1.0)
    assert sorted(m.key() for m in delivered) == sorted(f"k{i}".encode() for i in range(n)), "each record exactly once"

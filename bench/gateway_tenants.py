"""Does verification cost stay flat with many tenants? The tenant mode of bench.gateway_bench:

    .venv/bin/python -m bench.gateway_bench --tenants 10000 [--quick]

Two `router gateway` processes, the same sources and settings, each with its own connection
store read from its own ``_connections`` topic on the broker (a key ring in
``ROUTER_ENCRYPTION_KEY``, so each request is verified with the URL tenant's own secret):

(A) a store holding one connected tenant; every request is that tenant's;
(B) a store holding N connected tenants (default 10,000), each its own signing secret; the
    requests go to all N in a random order, each signed with its tenant's secret.

Both gateways run for the whole session; the rounds alternate the cases (A B, B A, A B, …) so
that other work on the machine hits both alike, and each round's ratio is taken between runs
next to each other. Each run is wrk (or bench.loadgen) at C connections, closed loop, after a
short warm-up, with requests signed just before it. Reported: every run, the median of each
case, the median of the per-round ratios B/A against the 0.9 target, and the checks:

- every answer of every run (warm-ups included) was 2xx, and no socket failed;
- per round, cross-tenant probes: tenant X's signed request is accepted at X's URL and refused
  (401 ``gateway.bad_signature``) at Y's; on (A), X (not connected there) gets the 404;
- afterwards, each case's ingest topic holds at least as many records as there were 2xx
  answers, (A)'s all from its one tenant, (B)'s from connected tenants only, and every one of
  the N tenants when a run cycled through them all.

The exit status is 0 when every check passed; it does not depend on meeting the target.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import psutil
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.gateway_bench import PY, ROOT, SECRET, lua_script, serving
from bench.loadgen import signed_request, write_requests
from bench.route_bench import profiler
from router.connections import codec
from router.connections.keyring import KeyRing, generate_key
from router.connections.model import Connection
from router.connections.store import TOPIC_ENV, ensure_topic
from router.kafka import producer_config
from router.settings import Secret, Settings
from router.spec.sources import decode_standard_webhooks_secret
from support.services import kafka_service, unique

TARGET = 0.9
PROBES_PER_ROUND = 3
REQUESTS_PER_CASE = 10_000  # the same number of distinct requests in both cases: the load client's work is alike


@dataclass
class Case:
    """One gateway of the comparison: its tenants (name → HMAC key), source and results."""

    label: str
    title: str
    source: str
    topic: str  # its _connections topic
    keys: dict[str, bytes]
    url: str = ""
    process: psutil.Process | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    warmups: list[dict[str, Any]] = field(default_factory=list)

    def cpu_s(self) -> float:
        """The gateway process's CPU seconds so far (user + system, every thread: librdkafka's too)."""
        if self.process is None:
            raise RuntimeError(f"gateway {self.label} is not running")
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def requests(self, rng: random.Random, count: int) -> list[bytes]:
        """``count`` requests signed now, to the tenants in a random order (every one before any twice)."""
        host, now = self.url.removeprefix("http://"), int(time.time())
        tenants = list(self.keys)
        order: list[str] = []
        while len(order) < count:
            rng.shuffle(tenants)
            order.extend(tenants)
        return [signed_request(host, f"/v1/hooks/{t}/{self.source}", self.keys[t], now, i)
                for i, t in enumerate(order[:count])]


def new_secrets(tenants: list[str]) -> dict[str, str]:
    """A fresh Standard Webhooks secret per tenant."""
    return {t: "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode() for t in tenants}


def write_connections(settings: Settings, ring: KeyRing, topic: str, source: str, secrets_by_tenant: dict[str, str]
                      ) -> float:
    """Write one active connection per tenant to ``topic``; return the seconds it took.

    The bench's own writer: ConnectionWriter waits for each ack (right for a person's one change,
    minutes for 10,000), so this produces every record with the same codec and flushes once.
    """
    started = time.monotonic()
    ensure_topic(settings, topic)
    producer = Producer(producer_config(settings))
    failures: list[KafkaError] = []
    delivered = 0

    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        nonlocal delivered
        if error is not None:
            failures.append(error)
        else:
            delivered += 1

    for tenant, secret in secrets_by_tenant.items():
        key, value = codec.encode(Connection(tenant, source, signing_secrets=(Secret(secret),)), ring)
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(60)
    if left or failures or delivered != len(secrets_by_tenant):
        raise SystemExit(f"writing connections to {topic}: {delivered} acknowledged of {len(secrets_by_tenant)}, "
                         f"{left} left, errors {failures[:3]}")
    return time.monotonic() - started


def wait_ready(url: str, deadline_s: float = 90.0) -> None:
    """Until /readyz answers 200: the connection store has caught up and the topics exist."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/readyz", timeout=5) as answer:
            if answer.status == 200:  # a 503 (still loading) raises HTTPError, an OSError
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready within {deadline_s:.0f}s")


def post_raw(url: str, raw: bytes) -> tuple[int, str]:
    """Send one raw request; (status, the problem ``code`` of a refusal or "")."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=15) as sock:
        sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    status = int(head[9:12])
    code = orjson.loads(body).get("code", "") if status >= 400 and body.startswith(b"{") else ""
    return status, str(code)


@dataclass(frozen=True)
class Probe:
    """One probe request: which gateway, what was sent and answered, whether that is right."""

    case: str
    text: str
    ok: bool
    accepted: bool  # answered 202: one more record on that case's topic


def probes(one: Case, many: Case, rng: random.Random, round_no: int) -> list[Probe]:
    """Tenant X's signed request at X's URL (202) and at Y's (refused), on both gateways."""
    now, results = int(time.time()), []
    host = many.url.removeprefix("http://")
    for k in range(PROBES_PER_ROUND + 1):
        x, y = rng.sample(list(many.keys), 2)
        signed = signed_request(host, f"/v1/hooks/{x}/{many.source}", many.keys[x], now, 1_000_000 + round_no * 100 + k)
        if k < PROBES_PER_ROUND:
            status, _ = post_raw(many.url, signed)
            results.append(Probe("B", f"{x}'s request at {x}'s URL -> {status} (want 202)", status == 202,
                                 status == 202))
            crossed = signed.replace(f"/v1/hooks/{x}/".encode(), f"/v1/hooks/{y}/".encode(), 1)
            status, code = post_raw(many.url, crossed)
            results.append(Probe("B", f"{x}'s request at {y}'s URL -> {status} {code} (want 401 "
                                 "gateway.bad_signature)", (status, code) == (401, "gateway.bad_signature"), False))
            continue
        # On (A): a tenant of (B) at the one tenant's URL, and at its own URL where it has no connection.
        (solo,) = one.keys
        at_solo = signed.replace(f"/v1/hooks/{x}/{many.source}".encode(), f"/v1/hooks/{solo}/{one.source}".encode())
        status, code = post_raw(one.url, at_solo)
        results.append(Probe("A", f"{x}'s request at {solo}'s URL -> {status} {code} (want 401 "
                             "gateway.bad_signature)", (status, code) == (401, "gateway.bad_signature"), False))
        unconnected = signed.replace(f"/{many.source}".encode(), f"/{one.source}".encode(), 1)
        status, code = post_raw(one.url, unconnected)
        results.append(Probe("A", f"{x}'s request at its URL, not connected there -> {status} {code} (want 404 "
                             "gateway.unknown_source)", (status, code) == (404, "gateway.unknown_source"), False))
    return results


def closed_run(url: str, requests: list[bytes], connections: int, seconds: float, env: dict[str, str],
               folder: Path) -> dict[str, Any]:
    """One closed-loop run of ``seconds`` cycling through ``requests``: wrk if installed, else bench.loadgen."""
    if shutil.which("wrk"):
        script = lua_script(requests, folder / "tenants.lua", count_2xx=True)
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", str(script),
                              "--timeout", "10s", url], capture_output=True, text=True, check=True,
                             timeout=seconds + 60).stdout
        stats = orjson.loads(next(line[5:] for line in out.splitlines() if line.startswith("JSON ")))
        elapsed = stats["duration_us"] / 1e6
        return {"client": "wrk", "requests": stats["requests"], "accepted": stats["accepted"],
                "socket_errors": stats["socket_errors"], "rps": stats["accepted"] / elapsed,
                "p50_ms": stats["p50_us"] / 1000, "p99_ms": stats["p99_us"] / 1000, "load": os.getloadavg()[0]}
    path = folder / "tenants.requests"
    write_requests(requests, path)
    argv = [PY, "-m", "bench.loadgen", "--url", url, "--requests", str(path), "--duration", str(seconds),
            "--warmup", "0", "--connections", str(connections)]
    stats = orjson.loads(subprocess.run(argv, capture_output=True, text=True, check=True, env=env, cwd=ROOT,
                                        timeout=seconds + 120).stdout.strip().splitlines()[-1])
    accepted = sum(n for status, n in stats["statuses"].items() if status.startswith("2"))
    return {"client": "loadgen", "requests": stats["requests"], "accepted": accepted,
            "socket_errors": stats["errors"], "rps": accepted / seconds, "p50_ms": stats["p50_ms"],
            "p99_ms": stats["p99_ms"], "load": os.getloadavg()[0]}


def read_tenants(bootstrap: str, topic: str, at_least: int, deadline_s: float = 120.0) -> Counter[str]:
    """Every record of ``topic`` by its ``router-tenant`` header: read until ``at_least`` and then 1 s with
    nothing new (Tansu's high watermark is not the log end), or 10 s with nothing, or the deadline."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("bench-read"),
                         "enable.auto.commit": False, "fetch.message.max.bytes": 4_000_000})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    tenants: Counter[str] = Counter()
    seen, end, idle_since = 0, time.monotonic() + deadline_s, time.monotonic()
    try:
        while time.monotonic() < end:
            batch = [m for m in consumer.consume(10_000, 0.5) if m.error() is None]
            for message in batch:
                tenant = dict(message.headers() or ()).get("router-tenant") or b""
                tenants[tenant.decode() if isinstance(tenant, bytes) else tenant] += 1
            now = time.monotonic()
            if batch:
                seen, idle_since = seen + len(batch), now
            elif now - idle_since >= (1.0 if seen >= at_least else 10.0):
                break
    finally:
        consumer.close()
    return tenants


def run(args: argparse.Namespace) -> int:
    """The tenant mode; returns the exit status (0: every check passed)."""
    started = time.monotonic()
    rounds = args.rounds or (3 if args.quick else 7)
    seconds = args.duration or (4.0 if args.quick else 10.0)
    warmup = 1.0 if args.quick else 2.0
    rng = random.Random(args.seed)
    run_id = unique("bench")
    solo = "solo"
    many_names = [f"t{n:05d}" for n in range(args.tenants)]
    one = Case("A", "A one tenant", f"{run_id}-a", f"_connections-{run_id}-a", {})
    many = Case("B", f"B {args.tenants} tenants", f"{run_id}-b", f"_connections-{run_id}-b", {})
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; {rounds} rounds of "
          f"{seconds:.0f} s runs (+{warmup:.0f} s warm-up), {args.connections} connections, "
          f"load client: {'wrk' if shutil.which('wrk') else 'bench.loadgen (wrk not installed)'}", flush=True)
    ring_text = generate_key()
    ring = KeyRing.parse(ring_text, "bench key")
    probe_results: list[Probe] = []
    with tempfile.TemporaryDirectory(prefix="gateway-tenants-") as tmp, kafka_service() as bootstrap:
        folder = Path(tmp)
        (folder / "sources").mkdir()
        for source in (one.source, many.source):  # both gateways load both: the same setup, the store decides
            (folder / "sources" / f"{source}.yaml").write_text(
                f"name: {source}\nsignature: {{scheme: standard_webhooks, secrets: ['env:BENCH_WEBHOOK_SECRET']}}\n"
                "event_id: event_id\nevent_type: type\nentity_key: data.ticket.id\n")
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BENCH_WEBHOOK_SECRET": SECRET,
               "ROUTER_LOG_LEVEL": "WARNING", "ROUTER_ENCRYPTION_KEY": ring_text}
        settings = Settings.from_env(env)
        for case, names in ((one, [solo]), (many, many_names)):
            whsecs = new_secrets(names)
            took = write_connections(settings, ring, case.topic, case.source, whsecs)
            case.keys = {t: decode_standard_webhooks_secret(s) for t, s in whsecs.items()}
            print(f"wrote {len(names)} connection(s) to {case.topic} in {took:.2f}s", flush=True)
        gateway = [PY, "-m", "router", "gateway", "--port", "0", "--sources", str(folder / "sources")]
        with contextlib.ExitStack() as stack:
            for case in (one, many):
                load_started = time.monotonic()
                case.url, child = stack.enter_context(serving(gateway, {**env, TOPIC_ENV: case.topic},
                                                              folder / f"gateway-{case.label}.log"))
                case.process = psutil.Process(child.pid)
                wait_ready(case.url)
                print(f"gateway {case.label} ready at {case.url} in {time.monotonic() - load_started:.1f}s "
                      f"(store of {len(case.keys)} connection(s) caught up)", flush=True)
            for n in range(rounds):
                for case in (one, many) if n % 2 == 0 else (many, one):
                    requests = case.requests(rng, REQUESTS_PER_CASE)
                    case.warmups.append(closed_run(case.url, requests, args.connections, warmup, env, folder))
                    cpu_before = case.cpu_s()
                    raw = folder / f"gateway-{case.label}.pyspy.txt"
                    with profiler(case.process.pid if case.process else 0, raw) as start_profile:
                        if args.profile and n == rounds - 1:  # the last round: the same load for both
                            start_profile()
                        measured = closed_run(case.url, requests, args.connections, seconds, env, folder)
                    measured["cpu_us"] = (case.cpu_s() - cpu_before) * 1e6 / max(1, measured["accepted"])
                    case.runs.append(measured)
                round_probes = probes(one, many, rng, n)
                probe_results.extend(round_probes)
                ratio = many.runs[-1]["rps"] / one.runs[-1]["rps"] if one.runs[-1]["rps"] else 0.0
                print(f"  round {n + 1}: A {one.runs[-1]['rps']:.0f} req/s, B {many.runs[-1]['rps']:.0f} req/s, "
                      f"B/A {ratio:.3f}; probes {sum(p.ok for p in round_probes)}/{len(round_probes)} as expected",
                      flush=True)
        stored = {}
        for case in (one, many):
            answered = sum(r["accepted"] for r in case.runs + case.warmups)
            answered += sum(p.accepted for p in probe_results if p.case == case.label)
            stored[case.label] = (answered, read_tenants(bootstrap, f"ingest.{case.source}", answered))
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):  # someone else's broker: leave nothing behind
            topics = [t for c in (one, many) for t in (f"ingest.{c.source}", f"ingest.{c.source}.dlq", c.topic)]
            for future in AdminClient({"bootstrap.servers": bootstrap}).delete_topics(topics).values():
                with contextlib.suppress(KafkaException):
                    future.result(30)
        if args.profile:
            profile_diff(folder / "gateway-A.pyspy.txt", folder / "gateway-B.pyspy.txt")
    return report(args, one, many, probe_results, stored, time.monotonic() - started)


def shares(raw: Path) -> tuple[Counter[str], Counter[str]]:
    """From py-spy's collapsed stacks: each function's own and inclusive share of the samples, in %."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines() if raw.exists() else ():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    total = total or 1
    return (Counter({f: 100 * c / total for f, c in own.items()}),
            Counter({f: 100 * c / total for f, c in inclusive.items()}))


def profile_diff(raw_a: Path, raw_b: Path, n: int = 12) -> None:
    """Print the functions whose share of the gateway's samples grew most from (A) to (B), own and inclusive."""
    (own_a, inc_a), (own_b, inc_b) = shares(raw_a), shares(raw_b)
    for what, a, b in (("own", own_a, own_b), ("inclusive", inc_a, inc_b)):
        grown = sorted(set(a) | set(b), key=lambda f: b[f] - a[f], reverse=True)[:n]
        print(f"\npy-spy, last round: functions whose {what} share of samples grew most from A to B (A% -> B%)")
        for frame in grown:
            print(f"  {a[frame]:5.1f} -> {b[frame]:5.1f}  {frame}")
    print(f"(collapsed stacks: {raw_a}, {raw_b}; kept only while the run lasts)")


def report(args: argparse.Namespace, one: Case, many: Case, probe_results: list[Probe],
           stored: dict[str, tuple[int, Counter[str]]], elapsed_s: float) -> int:
    """Print the runs, the medians, the ratio against the target and the checks; the exit status."""
    print(f"\n{'run':<28} {'client':>8} {'req/s':>9} {'CPU µs/req':>11} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} "
          f"{'load':>5}")
    for n, (a, b) in enumerate(zip(one.runs, many.runs, strict=True)):
        for case, r in ((one, a), (many, b)) if n % 2 == 0 else ((many, b), (one, a)):
            print(f"{case.title + ' #' + str(n + 1):<28} {r['client']:>8} {r['rps']:>9.0f} {r['cpu_us']:>11.1f} "
                  f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['requests'] - r['accepted']:>8} {r['load']:>5.1f}")
    ratios = [b["rps"] / a["rps"] if a["rps"] else 0.0 for a, b in zip(one.runs, many.runs, strict=True)]
    med_a = statistics.median(r["rps"] for r in one.runs)
    med_b = statistics.median(r["rps"] for r in many.runs)
    ratio = statistics.median(ratios)
    met = ratio >= TARGET
    print(f"\nmedians of {len(ratios)} rounds: A (1 tenant) {med_a:.0f} req/s, B ({args.tenants} tenants) "
          f"{med_b:.0f} req/s; B/A per round {', '.join(f'{r:.3f}' for r in ratios)}; median B/A {ratio:.3f} "
          f"(ratio of medians {med_b / med_a if med_a else 0:.3f}) -> target >= {TARGET}: "
          f"{'met' if met else 'NOT met'}")
    cpu_ratios = [b["cpu_us"] / a["cpu_us"] if a["cpu_us"] else 0.0 for a, b in zip(one.runs, many.runs, strict=True)]
    cpu_ratio = statistics.median(cpu_ratios)
    cpu_a, cpu_b = (statistics.median(r["cpu_us"] for r in case.runs) for case in (one, many))
    print(f"gateway CPU per request (user + system, all threads): A {cpu_a:.1f} µs, B {cpu_b:.1f} µs (medians); "
          "B/A per round "
          f"{', '.join(f'{r:.3f}' for r in cpu_ratios)}; median {cpu_ratio:.3f}")
    checks: list[tuple[str, bool]] = []
    for case in (one, many):
        every = case.runs + case.warmups
        bad = sum(r["requests"] - r["accepted"] for r in every)
        failed = sum(r["socket_errors"] for r in every)
        checks.append((f"{case.label}: {sum(r['accepted'] for r in every)} of {sum(r['requests'] for r in every)} "
                       f"answers 2xx over {len(every)} runs (warm-ups included), {bad} not, {failed} socket errors",
                       bad == 0 and failed == 0 and all(r["accepted"] > 0 for r in every)))
    wrong = [f"{p.case}: {p.text}" for p in probe_results if not p.ok]
    checks.append((f"cross-tenant probes: {len(probe_results) - len(wrong)} of {len(probe_results)} as expected"
                   + (f"; first wrong: {wrong[0]}" if wrong else ""), not wrong))
    for case in (one, many):
        answered, tenants = stored[case.label]
        records = sum(tenants.values())
        strangers = set(tenants) - set(case.keys)
        covered = max(r["accepted"] for r in case.runs) >= len(case.keys) + args.connections
        all_seen = len(tenants) == len(case.keys) or not covered
        checks.append((f"{case.label}: ingest.{case.source} holds {records} records for {answered} 2xx answers, "
                       f"from {len(tenants)} distinct tenants of {len(case.keys)} connected, "
                       f"{len(strangers)} from others", records >= answered and not strangers and all_seen))
    for text, ok in checks:
        print(f"check {'ok  ' if ok else 'FAIL'} {text}")
    output_ok = all(ok for _, ok in checks)
    print(f"whole run {elapsed_s:.0f}s")
    print(f"RESULT tenants={args.tenants} one_tenant_rps={med_a:.0f} many_tenants_rps={med_b:.0f} ratio={ratio:.3f} "
          f"cpu_ratio={cpu_ratio:.3f} rounds={len(ratios)} target_met={str(met).lower()} "
          f"output_ok={str(output_ok).lower()}")
    return 0 if output_ok else 1


if __name__ == "__main__":
    sys.exit("run it as: python -m bench.gateway_bench --tenants N [--quick]")

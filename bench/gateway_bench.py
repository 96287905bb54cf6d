"""Webhook gateway throughput and latency against a bare aiohttp handler. From the repository root:

    .venv/bin/python -m bench.gateway_bench [--duration S] [--connections C] [--rounds N] [--quick]
    .venv/bin/python -m bench.gateway_bench --tenants 10000 [--quick]   # bench/gateway_tenants.py

In one run, each server a separate process and the load generator another:
(a) the bare handler (bench.bare_gateway: read body, answer 202) — the ceiling;
(b) `router gateway`, one process: Standard Webhooks verification, JSON, durable produce
    (202 only after the broker's ack) to a fresh `ingest.<source>`;
(c) `router gateway --workers 2`: two processes on one port (SO_REUSEPORT).
Each gets a 3 s warm-up, then a closed-loop run at C connections (its maximum rate), in
interleaved rounds (a, b, c, a, b, c: noise from other work on the machine hits all alike;
the best of each counts). Then (b) is driven open-loop at half its best rate, paced,
latency counted from when each request was due, each such run followed by the bare
handler at the same rate as a control for the machine's own tail (lowest p99 counts).
Load comes from `wrk` when installed (apt-get install wrk), else from bench.loadgen (an
asyncio client process); the paced runs always use bench.loadgen. Finally the topic is read
back: it must hold at least as many records as there were 202s (then deleted, when the broker
came from KAFKA_BOOTSTRAP_SERVERS).
The last line printed is machine-readable (the RESULT line); see bench/README.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka
import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.loadgen import build_requests
from router.errors import ConfigError
from support.services import kafka_service, unique
from tools.dev.embedded.procs import ChildProcess

ROOT = Path(__file__).resolve().parents[1]
SECRET = "whsec_" + base64.b64encode(b"bench-only-secret-not-for-prod!!").decode()
PY = sys.executable


@contextlib.contextmanager
def serving(argv: list[str], env: dict[str, str], log: Path) -> Iterator[tuple[str, ChildProcess]]:
    """Start a server process, yield the URL from its READY line and the process, SIGTERM it at the end."""
    child = ChildProcess(" ".join(argv[2:5]), argv, log=log, env=env, cwd=ROOT)
    try:
        try:
            line = child.wait_for_line("READY ", deadline_s=120)
        except ConfigError as exc:
            raise SystemExit(f"{argv[2:5]} did not start: {exc}; see {log}") from None
        yield line.split("=", 1)[1].strip(), child
    finally:
        child.stop(grace_s=60)


@contextlib.contextmanager
def server(argv: list[str], env: dict[str, str], log: Path) -> Iterator[str]:
    """:func:`serving`, yielding only the URL."""
    with serving(argv, env, log) as (url, _child):
        yield url


_LUA_ESCAPE = re.compile(rb'[^\x20-\x7e]|["\\]')


def _lua_string(data: bytes) -> str:
    return '"' + _LUA_ESCAPE.sub(lambda m: b"\\%03d" % m[0][0], data).decode() + '"'


def lua_script(requests: list[bytes], script: Path, *, count_2xx: bool = False) -> Path:
    """A wrk Lua script cycling through pre-signed raw requests and printing a JSON summary line.

    With ``count_2xx`` each answer's status is read (a ``response`` callback: a little more work for
    wrk, the same in every run that uses it) and the summary counts the 2xx answers exactly (wrk
    itself only counts statuses above 399); without, ``accepted`` is -1.
    """
    table = ",\n".join(_lua_string(r) for r in requests)
    counting = ("local threads = {}\nsetup = function(thread) table.insert(threads, thread) end\n"
                "init = function(args) accepted = 0 end\n"
                "response = function(status, headers, body)\n"
                "  if status >= 200 and status < 300 then accepted = accepted + 1 end\nend\n") if count_2xx else ""
    total = ("local accepted = 0\n  for _, t in ipairs(threads) do accepted = accepted + t:get('accepted') end\n"
             if count_2xx else "local accepted = -1\n")
    script.write_text(
        f"local reqs = {{\n{table}\n}}\nlocal i = 0\n"
        "request = function()\n  i = i % #reqs + 1\n  return reqs[i]\nend\n" + counting +
        "done = function(summary, latency, requests)\n  local e = summary.errors\n  " + total +
        "  io.write(string.format('JSON {\"requests\":%d,\"duration_us\":%d,\"status_errors\":%d,"
        "\"socket_errors\":%d,\"p50_us\":%d,\"p99_us\":%d,\"max_us\":%d,\"accepted\":%d}\\n', summary.requests,"
        " summary.duration, e.status, e.connect + e.read + e.write + e.timeout, latency:percentile(50),"
        " latency:percentile(99), latency.max, accepted))\nend\n")
    return script


def wrk_script(url: str, path: str, folder: Path) -> Path:
    """A wrk Lua script cycling through pre-signed requests and printing a JSON summary."""
    host = url.removeprefix("http://")
    return lua_script(build_requests(host, path, SECRET), folder / "gateway.lua")


def closed_run(url: str, path: str, connections: int, duration: float, env: dict[str, str], folder: Path
               ) -> dict[str, Any]:
    """Maximum rate at ``connections``: wrk if installed, else bench.loadgen; after a 3 s warm-up."""
    if shutil.which("wrk"):
        script = wrk_script(url, path, folder)
        base = ["wrk", "-t1", f"-c{connections}", "-s", str(script), "--timeout", "10s", url]
        subprocess.run([*base[:3], "-d3s", *base[3:]], capture_output=True, check=True, timeout=60)
        out = subprocess.run([*base[:3], f"-d{int(duration)}s", *base[3:]], capture_output=True, text=True,
                             check=True, timeout=duration + 60).stdout
        stats = orjson.loads(next(line[5:] for line in out.splitlines() if line.startswith("JSON ")))
        seconds = stats["duration_us"] / 1e6
        ok = stats["requests"] - stats["status_errors"]
        return {"client": "wrk", "load": os.getloadavg()[0], "requests": stats["requests"], "accepted": ok,
                "rps": ok / seconds,
                "p50_ms": stats["p50_us"] / 1000, "p99_ms": stats["p99_us"] / 1000,
                "errors": stats["status_errors"] + stats["socket_errors"]}
    return loadgen(url, path, env, duration, connections=connections)


def loadgen(url: str, path: str, env: dict[str, str], duration: float, *, connections: int = 32,
            rate: float = 0.0) -> dict[str, Any]:
    """One bench.loadgen process (closed loop, or open loop at ``rate``)."""
    argv = [PY, "-m", "bench.loadgen", "--url", url, "--path", path, "--duration", str(duration),
            "--warmup", "3", "--connections", str(connections), "--rate", str(rate)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, env=env, cwd=ROOT,
                         timeout=duration + 120).stdout
    stats = orjson.loads(out.strip().splitlines()[-1])
    accepted = int(stats["statuses"].get("202", 0))
    return {"client": "loadgen", "load": os.getloadavg()[0], "requests": stats["requests"], "accepted": accepted,
            "rps": accepted / duration, "p50_ms": stats["p50_ms"], "p99_ms": stats["p99_ms"],
            "errors": stats["requests"] - accepted + stats["errors"]}


def count_records(bootstrap: str, topic: str, at_least: int, deadline_s: float = 120.0) -> int:
    """Read ``topic`` from the beginning until ``at_least`` records (or the deadline); return the count."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("bench-count"),
                         "enable.auto.commit": False, "fetch.message.max.bytes": 4_000_000})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    seen, end, idle_since = 0, time.monotonic() + deadline_s, time.monotonic()
    try:
        while seen < at_least and time.monotonic() < end and time.monotonic() - idle_since < 10:
            batch = [m for m in consumer.consume(10_000, 0.5) if m.error() is None]
            if batch:
                seen, idle_since = seen + len(batch), time.monotonic()
    finally:
        consumer.close()
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=0.0,
                        help="seconds per measured run (default 15; tenant mode 10, --quick 4)")
    parser.add_argument("--connections", type=int, default=128, help="closed-loop connections (default 128)")
    parser.add_argument("--rounds", type=int, default=0,
                        help="interleaved rounds: a, b, c, best of each (default 2); tenant mode A/B, medians "
                             "(default 7, --quick 3)")
    parser.add_argument("--tenants", type=int, default=0,
                        help="tenant mode (bench/gateway_tenants.py): one connected tenant against this many")
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs (~1 min in tenant mode)")
    parser.add_argument("--seed", type=int, default=1, help="tenant mode: the order of tenants and the probes")
    parser.add_argument("--profile", action="store_true",
                        help="tenant mode: py-spy both gateways in the last round, print what grew from A to B")
    args = parser.parse_args()
    if args.tenants:
        from bench.gateway_tenants import run  # imports this module: a top-level import would be circular

        sys.exit(run(args))
    args.duration = args.duration or (8.0 if args.quick else 15.0)
    args.rounds = args.rounds or (1 if args.quick else 2)
    source = unique("bench")
    path = f"/v1/hooks/acme/{source}"
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start, "
          f"{platform.python_implementation()} {platform.python_version()}, "
          f"librdkafka {confluent_kafka.libversion()[0]}, "
          f"load client: {'wrk' if shutil.which('wrk') else 'bench.loadgen (wrk not installed)'}", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {"a": [], "b": [], "c": []}
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp, kafka_service() as bootstrap:
        folder = Path(tmp)
        (folder / "sources").mkdir()
        (folder / "sources" / f"{source}.yaml").write_text(
            f"name: {source}\nsignature: {{scheme: standard_webhooks, secrets: ['env:BENCH_WEBHOOK_SECRET']}}\n"
            "event_id: event_id\nevent_type: type\nentity_key: data.ticket.id\n")
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BENCH_WEBHOOK_SECRET": SECRET,
               "ROUTER_LOG_LEVEL": "WARNING"}
        gateway = [PY, "-m", "router", "gateway", "--port", "0", "--sources", str(folder / "sources")]
        servers = {"a": [PY, "-m", "bench.bare_gateway"], "b": gateway, "c": [*gateway, "--workers", "2"]}
        # Interleaved rounds: whatever else the machine does hits a, b and c alike.
        for n in range(args.rounds):
            for label, argv in servers.items():
                with server(argv, env, folder / f"{label}{n}.log") as url:
                    runs[label].append(closed_run(url, path, args.connections, args.duration, env, folder))
                print(f"  round {n + 1} {label}: {runs[label][-1]['rps']:.0f} req/s", flush=True)
        best = {label: max(results, key=lambda r: r["rps"]) for label, results in runs.items()}
        half = round(best["b"]["rps"] / 2)
        # Paced runs at half of (b)'s best, each followed by the bare handler at the same rate: the
        # control shows how much of a tail the machine itself adds at that moment.
        for n in range(args.rounds):
            for label, argv in (("b-half", gateway), ("a-half", servers["a"])):
                with server(argv, env, folder / f"{label}{n}.log") as url:
                    runs.setdefault(label, []).append(loadgen(url, path, env, args.duration, rate=half))
                print(f"  round {n + 1} {label}: p99 {runs[label][-1]['p99_ms']:.1f} ms", flush=True)
        at_half = min(runs["b-half"], key=lambda r: r["p99_ms"])
        accepted = sum(r["accepted"] for label in ("b", "c", "b-half") for r in runs[label])
        stored = count_records(bootstrap, f"ingest.{source}", accepted)
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):  # someone else's broker: leave nothing behind
            topics = [f"ingest.{source}", f"ingest.{source}.dlq"]
            for future in AdminClient({"bootstrap.servers": bootstrap}).delete_topics(topics).values():
                with contextlib.suppress(KafkaException):
                    future.result(30)
    titles = {"a": "a bare handler", "b": "b gateway, 1 process", "c": "c gateway, 2 processes (reuseport)",
              "b-half": f"b at {half}/s (half, paced)", "a-half": f"a at {half}/s (control, paced)"}
    print(f"\n{'run':<40} {'client':>8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-202':>8} {'load':>5}")
    rows = [(f"{titles[label]} #{n + 1}", r) for label, results in runs.items() for n, r in enumerate(results)]
    for title, r in rows:
        print(f"{title:<40} {r['client']:>8} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
              f"{r['errors']:>8} {r['load']:>5.1f}")
    print("load: the 1-minute load average when the run ended; the bench itself accounts for about 2-3 of it, "
          "more means other work shared the cores")
    bare, one, two = best["a"]["rps"], best["b"]["rps"], best["c"]["rps"]
    ratio = one / bare if bare else 0.0
    print(f"\nbest of {args.rounds}: (b)/(a) = {ratio:.2f} (target >= 0.5); p99 at half rate = "
          f"{at_half['p99_ms']:.1f} ms (target <= 50; bare control {min(r['p99_ms'] for r in runs['a-half']):.1f} ms); "
          f"SO_REUSEPORT gain (c)/(b) = "
          f"{two / one if one else 0:.2f}x with 2 processes on {os.cpu_count()} cores")
    print(f"durability: {accepted} answered 202, {stored} records on ingest.{source} "
          f"({'ok' if stored >= accepted else 'MISSING RECORDS'})")
    print(f"RESULT gateway_rps={one:.0f} bare_rps={bare:.0f} ratio={ratio:.2f} p99_ms_at_half={at_half['p99_ms']:.1f}")


if __name__ == "__main__":
    main()

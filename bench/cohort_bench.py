"""Cohort sync at scale. Run from the repository root:

    .venv/bin/python -m bench.cohort_bench [--members 10000000]

Two `router cohort sync` processes against the same (audience, destination): a first sync of N
string ids (``user-<n>``, all adds), then an hourly sync with 1% churn (0.5% leave, 0.5% join).
Each sync runs as its own process whose resident memory is sampled every 50 ms (psutil); its
diff and publish seconds come from the line it prints. No route or delivery workers run: the
figure is snapshot → records acknowledged by Kafka. The last line printed is machine-readable:

    RESULT diff_s=<n> first_publish_s=<n> churn_sync_s=<n> peak_rss_mb=<n>

``diff_s`` is the larger of the two runs' diff phases (read + check + hash the snapshot, load
and rehash the stored state, plan). See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import redis
import zstandard
from confluent_kafka.admin import AdminClient

from producers.cohorts.members import Members
from support.services import kafka_service, redis_service, start_registry, unique

ROOT = Path(__file__).resolve().parents[1]
SYNC_LINE = re.compile(r"diff (?P<diff>[0-9.]+)s \((?P<steps>[^)]*)\), publish (?P<publish>[0-9.]+)s, "
                       r"stored state (?P<mb>[0-9.]+) MB")
SUMMARY = re.compile(r"^added=(\d+) removed=(\d+) unchanged=(\d+) records=(\d+) seconds=([0-9.]+)$")


@dataclass
class SyncRun:
    """What one sync process reported and used."""

    label: str
    added: int = 0
    removed: int = 0
    records: int = 0
    seconds: float = 0.0
    diff_s: float = 0.0
    publish_s: float = 0.0
    peak_rss_mb: float = 0.0
    steps: str = ""
    ok: bool = False


def write_snapshots(folder: Path, members: int, seed: int) -> tuple[Path, Path, int, int]:
    """``first.txt`` = user-0..N-1; ``churn.txt`` = 0.5% of them left, 0.5% new ones joined."""
    rng = np.random.default_rng(seed)
    leave_n = join_n = members // 200
    first = folder / "first.txt"
    churn = folder / "churn.txt"
    step = 1_000_000
    leaving = np.zeros(members, bool)
    leaving[rng.choice(members, leave_n, replace=False)] = True
    with open(first, "wb") as a, open(churn, "wb") as b:
        for lo in range(0, members, step):
            hi = min(members, lo + step)
            a.write(b"".join(b"user-%d\n" % n for n in range(lo, hi)))
            keep = np.flatnonzero(~leaving[lo:hi]) + lo
            b.write(b"".join(b"user-%d\n" % n for n in keep.tolist()))
        b.write(b"".join(b"user-%d\n" % n for n in range(members, members + join_n)))
    return first, churn, leave_n, join_n


def run_sync(label: str, argv: list[str], env: dict[str, str], log: Path, deadline_s: float) -> SyncRun:
    """Start one sync process, sample its RSS until it exits, parse what it printed."""
    run = SyncRun(label)
    with open(log, "wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env)
        ps = psutil.Process(proc.pid)
        end = time.monotonic() + deadline_s
        peak = 0
        while proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                peak = max(peak, ps.memory_info().rss)
            if time.monotonic() > end:
                proc.kill()
                break
            time.sleep(0.05)
        out = (proc.stdout.read() if proc.stdout else b"").decode()
        proc.wait(10)
    run.peak_rss_mb = peak / 1e6
    text = log.read_text()
    if (m := SYNC_LINE.search(text)) is not None:
        run.diff_s, run.publish_s, run.steps = float(m["diff"]), float(m["publish"]), m["steps"]
    lines = out.strip().splitlines()
    if lines and (s := SUMMARY.match(lines[-1])) is not None:
        run.added, run.removed, run.records, run.seconds = int(s[1]), int(s[2]), int(s[4]), float(s[5])
        run.ok = proc.returncode == 0
    if not run.ok:
        print(f"{label} sync failed (exit {proc.returncode}); its log:\n{text[-3000:]}", file=sys.stderr)
    return run


def hash_array_size(path: Path) -> float:
    """MB the sorted 64-bit hashes would take (delta-encoded, byte-shuffled, zstd): the alternative format."""
    members = Members.from_canonical(path.read_bytes())
    deltas = np.diff(members.sorted, prepend=np.uint64(0))
    shuffled = deltas.view(np.uint8).reshape(-1, 8).T.copy().tobytes()
    return len(zstandard.ZstdCompressor(level=3).compress(shuffled)) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cohort_bench", description="cohort sync at scale")
    parser.add_argument("--members", type=int, default=10_000_000, help="ids in the snapshot (default 10000000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds each sync may take")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    name = unique("cohortbench")
    prefix = f"{name}:"
    audience, destination = f"{name}-aud", "bench"
    with tempfile.TemporaryDirectory(prefix="cohort-bench-") as tmp, kafka_service() as bootstrap, \
            redis_service() as redis_url, start_registry(bootstrap, Path(tmp)) as registry_url:
        folder = Path(tmp)
        t0 = time.monotonic()
        first, churn, leave_n, join_n = write_snapshots(folder, args.members, args.seed)
        print(f"snapshots: {args.members:,} ids ({first.stat().st_size / 1e6:.0f} MB), churn -{leave_n:,} "
              f"+{join_n:,}; written in {time.monotonic() - t0:.1f}s", flush=True)
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "REDIS_URL": redis_url,
               "SCHEMA_REGISTRY_URL": registry_url, "ROUTER_REDIS_KEY_PREFIX": prefix, "PYTHONUNBUFFERED": "1"}
        base = [sys.executable, "-m", "router", "cohort", "sync", "--audience", audience,
                "--destination", destination, "--schemas", str(ROOT / "schemas" / "avro")]
        client = redis.Redis.from_url(redis_url)
        try:
            one = run_sync("first", [*base, "--snapshot", str(first)], env, folder / "first.log", args.deadline)
            meta = json.loads(client.hget(f"{prefix}cohort:{audience}:{destination}:state", "meta") or b"{}")
            two = run_sync("churn", [*base, "--snapshot", str(churn)], env, folder / "churn.log", args.deadline)
        finally:
            keys = list(client.scan_iter(f"{prefix}*"))
            if keys:
                client.delete(*keys)
            client.close()
            if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
                AdminClient({"bootstrap.servers": bootstrap}).delete_topics([f"cohort.{audience}",
                                                                             f"cohort.{audience}.dlq"])
        hashes_mb = hash_array_size(first)
    load_after = os.getloadavg()
    stored_mb = meta.get("stored_bytes", 0) / 1e6
    for run in (one, two):
        print(f"{run.label:>5} sync: added {run.added:,} removed {run.removed:,} records {run.records:,}; "
              f"diff {run.diff_s:.2f}s ({run.steps}) publish {run.publish_s:.2f}s total {run.seconds:.2f}s; "
              f"peak RSS {run.peak_rss_mb:.0f} MB", flush=True)
    print(f"stored state: {stored_mb:.1f} MB ({meta.get('count', 0):,} ids, {meta.get('raw_bytes', 0) / 1e6:.0f} MB "
          f"raw, zstd); the sorted hashes alone would take {hashes_mb:.1f} MB", flush=True)
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} ({os.cpu_count()} cores)")
    expected = (args.members, 0, -(-args.members // 1000)), (join_n, leave_n)
    ok = one.ok and two.ok and (one.added, one.removed, one.records) == expected[0] \
        and (two.added, two.removed) == expected[1]
    diff_s = max(one.diff_s, two.diff_s)
    peak = max(one.peak_rss_mb, two.peak_rss_mb)
    targets = [("diff ≤ 10 s", diff_s <= 10), ("first-sync publish ≤ 60 s", one.publish_s <= 60),
               ("peak RSS ≤ 1.5 GB", peak <= 1500)]
    print("targets: " + "; ".join(f"{t} {'met' if m else 'NOT met'}" for t, m in targets)
          + ("" if ok else "; OUTPUT CHECK FAILED"))
    print(f"RESULT diff_s={diff_s:.2f} first_publish_s={one.publish_s:.2f} churn_sync_s={two.seconds:.2f} "
          f"peak_rss_mb={peak:.0f}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

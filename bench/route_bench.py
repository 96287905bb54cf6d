"""Route-worker throughput against the passthrough ceiling. Run from the repository root:

    .venv/bin/python -m bench.route_bench [--events N] [--partitions P] [--rounds R] [--redis-cluster]

One run: generate N Zendesk-like escalations (bench.workload), produce them once to a fresh
topic, then read that topic from the beginning four times, each with its own consumer group:
(a) the passthrough ceiling (bench.passthrough), (f) the floor (bench.floor: the same work as a
route worker, hand-written for this one spec, with nothing else), (b) one `router route` process,
(c) two. Each figure is measured between the group's first commit and the commit of the N-th record,
so process start-up and the group join are not counted. (f), (b) and (c) write to their own
delivery topics, which are read back and checked against the expected event ids.
With ``--redis-cluster`` each round also runs (k): one `router route` process on a local 3-master
Redis Cluster (docs/redis.md), beside (b) on the standalone Redis: events/s, Redis CPU per event in
all (and per node), the share of the run's keys on each master, and the same output check.
The last line printed is machine-readable (the RESULT line); see bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import confluent_kafka
import psutil
import redis
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from rich.console import Console
from rich.table import Table

from bench.workload import Record, Workload, generate
from router import redisconn
from router.kafka import admin_client, ensure_topics, producer_config
from router.settings import Settings
from support.routing import Topology, make_topology, prepare_services, zendesk_spec
from support.services import kafka_service, redis_cluster_service, redis_service, start_registry, unique
from support.workers import worker_env
from tools.dev.embedded.procs import ChildProcess

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.1


@dataclass
class Run:
    """One measured configuration: its processes and what was seen of them."""

    label: str
    title: str
    self_exits: bool  # the passthrough and the floor stop by themselves at N records; route workers at SIGTERM
    group: str
    argvs: list[list[str]]
    env: dict[str, str]
    dest: str
    events: int = 0
    eps: float = 0.0
    cpu_us: float = 0.0
    host_cores: float = 0.0  # cores busy on the machine, on average over the window
    other_cores: float = 0.0  # of which used by none of: workers, broker, Redis, this bench
    service_cpu_us: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: list[float] = field(default_factory=list)
    to_first_commit_s: float = 0.0
    complete: bool = False
    note: str = ""
    logs: list[Path] = field(default_factory=list)
    baseline: bool = False  # (a): the runs after it, up to the next baseline, are compared with it
    cluster: bool = False  # (k): on the Redis Cluster; its Redis CPU is the sum over the masters
    key_share: list[float] = field(default_factory=list)  # (k): the share of its keys on each master


class GroupProgress:
    """Sum of a group's committed offsets on one topic, read by a consumer that never joins."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]

    def committed(self) -> int:
        return sum(max(tp.offset, 0) for tp in self._consumer.committed(self._tps, timeout=10))

    def close(self) -> None:
        self._consumer.close()


class ServiceCpu:
    """CPU seconds used so far by the broker (when it is our embedded child), by Redis (INFO cpu,
    every client's work), by each master of the Redis Cluster (``node <address>``, and their sum
    ``cluster``) when there is one, and by this bench process (polling, sampling)."""

    def __init__(self, redis_url: str, cluster_url: str | None = None) -> None:
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5)
        self._nodes: list[redis.Redis] = []
        if cluster_url:
            cluster = redisconn.connect(cluster_url)
            assert isinstance(cluster, redis.cluster.RedisCluster)
            self._nodes = [redis.Redis(host=n.host, port=n.port, socket_timeout=5) for n in cluster.get_primaries()]
            cluster.close()
        self._me = psutil.Process()
        self._broker = next((p for p in self._me.children(recursive=True) if "tansu" in p.name()), None)

    def sample(self) -> dict[str, float]:
        out = {"bench": cpu_seconds(self._me)}
        if self._broker is not None:
            with contextlib.suppress(psutil.Error):
                out["broker"] = cpu_seconds(self._broker)
        with contextlib.suppress(redis.RedisError):
            out["redis"] = _redis_cpu(self._redis)
        with contextlib.suppress(redis.RedisError):
            for node in self._nodes:
                address = node.connection_pool.connection_kwargs["port"]
                out[f"node {address}"] = _redis_cpu(node)
            if self._nodes:
                out["cluster"] = sum(v for k, v in out.items() if k.startswith("node "))
        return out

    def close(self) -> None:
        self._redis.close()
        for node in self._nodes:
            node.close()


def _redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# ---- measuring one run ----------------------------------------------------------------------

def host_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (guest time is inside user; steal is not ours)."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def measure(run: Run, procs: Sequence[ChildProcess], progress: GroupProgress, services: ServiceCpu, total: int,
            deadline_s: float, on_first_commit: Callable[[], None] | None = None) -> None:
    """Poll the group's commits every 0.1 s until ``total``; fill ``run`` with rate, CPU and RSS.

    eps = records committed after the first commit / time from first to last commit; CPU is the
    workers' user+system time (every thread) over the same window; the broker's and Redis's
    CPU over the window is reported per event too (they share the machine with the workers).
    """
    ps = [psutil.Process(p.pid) for p in procs]
    run.peak_rss_mb = [0.0] * len(ps)
    started = time.monotonic()
    end = started + deadline_s
    # at the first commit: time, committed, CPU seconds of the workers, of the host, of the services
    first: tuple[float, int, float, float, dict[str, float]] | None = None
    committed = 0
    cpu = 0.0
    while True:
        tick = time.monotonic()
        committed = progress.committed()
        now = time.monotonic()
        try:
            cpu = sum(cpu_seconds(p) for p in ps)
            for i, p in enumerate(ps):
                run.peak_rss_mb[i] = max(run.peak_rss_mb[i], p.memory_info().rss / 2**20)
        except psutil.NoSuchProcess:  # the passthrough exits once done: keep the CPU seen 0.1 s ago
            if first is None or committed < total:
                run.note = "a worker exited during the run"
                break
        host_busy = host_busy_seconds()
        if first is None and committed > 0:
            first = (now, committed, cpu, host_busy, services.sample())
            run.to_first_commit_s = now - started
            if on_first_commit:
                on_first_commit()
        if first is not None and committed >= total:
            t0, c0, cpu0, host0, services0 = first
            window = now - t0
            run.events = committed - c0
            run.eps = run.events / window if window > 0 else 0.0
            run.cpu_us = (cpu - cpu0) / max(1, run.events) * 1e6
            for name, seconds in services.sample().items():
                if name in services0:
                    run.service_cpu_us[name] = (seconds - services0[name]) / max(1, run.events) * 1e6
            own = {k: v for k, v in run.service_cpu_us.items() if k != "cluster"}  # "cluster" sums the nodes
            known = cpu - cpu0 + sum(own.values()) * run.events / 1e6
            if window > 0:
                run.host_cores = (host_busy - host0) / window
                run.other_cores = max(0.0, host_busy - host0 - known) / window
            run.complete = True
            return
        if now > end:
            run.note = f"deadline {deadline_s:.0f}s passed at {committed}/{total} committed"
            break
        time.sleep(max(0.0, POLL_S - (time.monotonic() - tick)))
    if first is not None:  # incomplete: report the partial rate, never as a pass
        window = time.monotonic() - first[0]
        run.events = committed - first[1]
        run.eps = run.events / window if window > 0 else 0.0


@contextlib.contextmanager
def profiler(pid: int, out: Path) -> Iterator[Callable[[], None]]:
    """py-spy record on ``pid``, started by the returned callable, stopped (SIGINT) on exit."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    holder: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        argv = [exe, "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "--function",
                "--output", str(out)]  # blocking: consistent stacks
        holder.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    try:
        yield start
    finally:
        for proc in holder:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def top_functions(raw: Path, n: int = 10) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """From py-spy's collapsed stacks: the ``n`` functions with most own time (top of the stack)
    and most inclusive time (anywhere on it, leaving out the outer frames seen in ≥ 95%), in %."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    total = total or 1
    inner = [(f, c) for f, c in inclusive.most_common() if c < 0.95 * total]
    return ([(f, 100 * c / total) for f, c in own.most_common(n)], [(f, 100 * c / total) for f, c in inner[:n]])


def execute(run: Run, workdir: Path, progress: GroupProgress, services: ServiceCpu, total: int, deadline_s: float,
            profile: Path | None = None) -> None:
    """Start the run's processes, measure, stop them (always)."""
    procs: list[ChildProcess] = []
    try:
        for i, argv in enumerate(run.argvs):
            log = workdir / f"{run.label}-{i}.log"
            run.logs.append(log)
            procs.append(ChildProcess(f"{run.label} worker {i}", argv, log=log, env=run.env))
        if profile is None:
            measure(run, procs, progress, services, total, deadline_s)
        else:
            with profiler(procs[0].pid, profile) as start:
                measure(run, procs, progress, services, total, deadline_s, on_first_commit=start)
    finally:
        for proc in procs:
            if run.self_exits:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.proc.wait(15)
            proc.stop(grace_s=20)  # SIGTERM: a route worker finishes its batch and leaves the group
        progress.close()


# ---- input and output -----------------------------------------------------------------------

def produce_all(settings: Settings, topic: str, records: Sequence[Record], deadline_s: float) -> float:
    """Produce every record with the gateway's producer settings; return the seconds it took."""
    producer = Producer(producer_config(settings))
    failures: list[KafkaError] = []
    started = time.monotonic()
    end = started + deadline_s
    for key, value, headers in records:
        while True:
            try:
                producer.produce(topic, value, key, headers=headers,  # type: ignore[arg-type]
                                 on_delivery=lambda err, _m: failures.append(err) if err else None)
                break
            except BufferError:
                if time.monotonic() > end:
                    raise SystemExit(f"producing the input took longer than {deadline_s:.0f}s") from None
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(max(1.0, end - time.monotonic()))
    if left or failures:
        raise SystemExit(f"producing the input failed: {left} unacknowledged, errors {failures[:3]}")
    return time.monotonic() - started


def read_event_ids(bootstrap: str, topic: str, expected: set[str], deadline_s: float) -> tuple[int, set[str]]:
    """Read ``topic`` from the beginning (assign, no group); return (records, distinct event ids).

    Stops once every expected id is seen and 2 s pass with nothing new (to catch extra ids), or
    at the deadline. Tansu's high watermark is not the log end, so "the end" is a quiet period.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("bench-reader"),
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    records = 0
    ids: set[str] = set()
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        end = time.monotonic() + deadline_s
        quiet_since = time.monotonic()
        while time.monotonic() < end:
            batch = consumer.consume(10_000, 0.5)
            for msg in batch:
                if msg.error() is None:
                    records += 1
                    event_id = dict(msg.headers() or ()).get("router-event-id") or b""
                    ids.add(event_id.decode() if isinstance(event_id, bytes) else event_id)
            if batch:
                quiet_since = time.monotonic()
            elif expected <= ids and time.monotonic() - quiet_since >= 2.0:
                break
    finally:
        consumer.close()
    return records, ids


# ---- the report -----------------------------------------------------------------------------

def machine_facts(bootstrap: str, redis_url: str, registry: str, embedded: bool) -> list[str]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown")
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        redis_version = client.info("server").get("redis_version", "?")
    finally:
        client.close()
    return [
        f"cpu: {model}, {psutil.cpu_count()} logical cores ({psutil.cpu_count(logical=False)} physical), "
        f"{psutil.virtual_memory().total / 2**30:.1f} GiB RAM, {platform.system()} {platform.release()}",
        f"python {platform.python_version()}, confluent-kafka {confluent_kafka.__version__}, "
        f"librdkafka {confluent_kafka.libversion()[0]}",
        f"kafka {bootstrap} ({'embedded Tansu' if embedded else 'from KAFKA_BOOTSTRAP_SERVERS'}), "
        f"redis {redis_version} at {redis_url}, registry {registry}",
    ]


def ratio(x: float, base: float) -> float:
    return x / base if base > 0 else 0.0


def report(console: Console, runs: list[Run]) -> None:
    base = runs[0]
    table = Table(title="route throughput, from the group's first commit to its last")
    for name in ("run", "events", "events/s (vs a)", "CPU µs/ev (vs a)", "RSS MB (vs a)", "broker µs/ev",
                 "redis µs/ev", "host cores", "other cores", "to 1st commit"):
        table.add_column(name, justify="left" if name == "run" else "right", no_wrap=name == "run")
    for r in runs:
        if r.baseline:  # each round's (f), (b) and (c) are compared with that round's passthrough
            base = r
        rss = max(r.peak_rss_mb or [0.0])
        table.add_row(f"({r.label}) {r.title}" + ("" if r.complete else " [red]INCOMPLETE[/]"), f"{r.events:,}",
                      f"{r.eps:,.0f} ({ratio(r.eps, base.eps):.2f})",
                      f"{r.cpu_us:,.0f} ({ratio(r.cpu_us, base.cpu_us):.2f})",
                      f"{rss:,.0f} ({ratio(rss, base_rss(base)):.2f})",
                      _us(r.service_cpu_us.get("broker")),
                      _us(r.service_cpu_us.get("cluster" if r.cluster else "redis")),
                      f"{r.host_cores:.2f}", f"{r.other_cores:.2f}", f"{r.to_first_commit_s:.1f}s")
    console.print(table)
    console.print(f"CPU µs/ev: the workers' user+system time per event; RSS: peak per process; host cores: CPU "
                  f"busy on this {psutil.cpu_count()}-core machine during the window; other cores: the part used by "
                  "none of the workers, the broker, Redis or this bench (other load skews the figures)",
                  highlight=False, soft_wrap=True)
    busy = [r.label for r in runs if r.other_cores > 0.2]
    if busy:
        console.print(f"[yellow]warning:[/] other processes used more than 0.2 cores during ({'), ('.join(busy)}): "
                      "the figures are skewed; rerun on a quiet machine", highlight=False)
    for r in (r for r in runs if r.cluster):
        nodes = ", ".join(f"{k[5:]}: {v:,.1f}" for k, v in r.service_cpu_us.items() if k.startswith("node "))
        shares = ", ".join(f"{x:.0%}" for x in r.key_share)
        console.print(f"({r.label}) Redis CPU µs/ev per master: {nodes}; share of the run's keys per master: {shares}",
                      highlight=False, soft_wrap=True)
    for r in runs:
        peaks = ", ".join(f"{m:.0f}" for m in r.peak_rss_mb)
        console.print(f"({r.label}) peak RSS per process MB: {peaks}; {'; '.join(worker_summaries(r))}"
                      + (f"; {r.note}" if r.note else ""), highlight=False, soft_wrap=True)


def worker_summaries(run: Run) -> list[str]:
    """Each worker's last line (`router route` prints its outcome totals when it stops), and its log."""
    out = []
    for log in run.logs:
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        last = next((line for line in reversed(lines) if line.startswith("stopped")), "no stop line")
        out.append(f"{last} ({log.name})")
    return out


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def base_rss(run: Run) -> float:
    return max(run.peak_rss_mb or [0.0])


def keys_per_master(cluster_url: str, prefix: str) -> list[int]:
    """How many keys under ``prefix`` each master of the cluster holds."""
    client = redisconn.connect(cluster_url, socket_timeout=30)
    assert isinstance(client, redis.cluster.RedisCluster)
    try:
        return [sum(1 for _ in client.scan_iter(match=f"{prefix}*", count=10_000, target_nodes=node))
                for node in client.get_primaries()]
    finally:
        client.close()


def cleanup_cluster(cluster_url: str, prefixes: Sequence[str]) -> None:
    """``cleanup_redis`` on the cluster: SCAN each master, UNLINK key by key (one slot each)."""
    client = redisconn.connect(cluster_url, socket_timeout=30)
    assert isinstance(client, redis.cluster.RedisCluster)
    try:
        for prefix in prefixes:
            for node in client.get_primaries():
                pipe = client.pipeline(transaction=False)
                for key in client.scan_iter(match=f"{prefix}*", count=10_000, target_nodes=node):
                    pipe.unlink(key)
                pipe.execute()
    finally:
        client.close()


def cleanup_redis(redis_url: str, prefixes: Sequence[str]) -> int:
    """Delete the dedupe keys and watermarks this run wrote (its prefixes are unique to it)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=30)
    deleted = 0
    try:
        for prefix in prefixes:
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"{prefix}*", count=10_000):
                batch.append(key)
                if len(batch) >= 10_000:
                    deleted += client.unlink(*batch)
                    batch.clear()
            if batch:
                deleted += client.unlink(*batch)
    finally:
        client.close()
    return deleted


# ---- the whole run --------------------------------------------------------------------------

@dataclass
class Services:
    bootstrap: str
    redis_url: str
    registry_url: str
    settings: Settings
    cluster_url: str | None = None


def run_spec(label: str, run_id: str, services: Services, workdir: Path, partitions: int
             ) -> tuple[str, Topology, dict[str, int]]:
    """A run's own spec, named ``<run_id>-<label>`` (also its destination, group and Redis prefix),
    reading ``ingest.<run_id>``: (f), (b) and (c) handle the same pre-produced input. Its topics
    are created and its schema registered; returns (name, topology, schema ids by integration)."""
    name = f"{run_id}-{label}"
    (workdir / label).mkdir()
    topo = make_topology(workdir / label, name, {"bench": zendesk_spec(name, source=run_id, destination=name)})
    return name, topo, prepare_services(services.settings, services.registry_url, topo, partitions)


def route_run(label: str, title: str, processes: int, run_id: str, services: Services, workdir: Path,
              partitions: int, *, cluster: bool = False) -> tuple[Run, Topology]:
    """A `router route` run with its own spec, group and Redis prefix (``run_spec``), on the
    standalone Redis or (``cluster``) on the Redis Cluster."""
    name, topo, _ = run_spec(label, run_id, services, workdir, partitions)
    redis_url = (services.cluster_url or "") if cluster else services.redis_url
    env = {**worker_env(services.bootstrap, redis_url, services.registry_url, f"{name}:"),
           "ROUTER_TOPIC_PARTITIONS": str(partitions)}
    argv = [sys.executable, "-m", "router", "route", "--integrations", str(topo.integrations),
            "--schemas", str(topo.schemas), "--group", name]
    return Run(label, title, False, name, [argv] * processes, env, topo.dest_topic(name), cluster=cluster), topo


def floor_run(label: str, run_id: str, services: Services, workdir: Path, partitions: int, events: int,
              deadline_s: float) -> tuple[Run, Topology]:
    """The floor (bench.floor) with its own spec, group and Redis prefix (``run_spec``)."""
    name, topo, schema_ids = run_spec(label, run_id, services, workdir, partitions)
    integration = topo.catalog.by_name(name)
    argv = [sys.executable, "-m", "bench.floor", "--bootstrap", services.bootstrap, "--redis-url", services.redis_url,
            "--source", integration.source.topic, "--dest", topo.dest_topic(name), "--group", name,
            "--prefix", f"{name}:", "--source-name", integration.source.name, "--integration", name,
            "--schema-id", str(schema_ids[name]), "--events", str(events), "--deadline", str(deadline_s)]
    return Run(label, "floor, 1 process", True, name, [argv], {**os.environ, "PYTHONPATH": str(ROOT)},
               topo.dest_topic(name)), topo


def bench(args: argparse.Namespace, console: Console, runs: list[Run], outputs_ok: list[bool]) -> None:
    """Generate, start services, produce, run (a) (f) (b) (c), check outputs; fills ``runs``/``outputs_ok``."""
    run_id = unique("bench")
    workdir = Path(tempfile.mkdtemp(prefix="route-bench-"))
    t0 = time.monotonic()
    workload: Workload = generate(args.events, seed=args.seed)
    n = len(workload.records)
    expected = workload.expected_ids
    gen_s = time.monotonic() - t0
    external = bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    with contextlib.ExitStack() as stack:
        bootstrap = stack.enter_context(kafka_service())
        redis_url = stack.enter_context(redis_service())
        cluster_url = stack.enter_context(redis_cluster_service()) if args.redis_cluster else None
        registry_url = os.environ.get("SCHEMA_REGISTRY_URL") or stack.enter_context(
            start_registry(bootstrap, workdir))
        settings = Settings(kafka_bootstrap_servers=bootstrap, redis_url=redis_url, session_timeout_ms=6000,
                            topic_partitions=args.partitions)
        services = Services(bootstrap, redis_url, registry_url, settings, cluster_url)
        for line in machine_facts(bootstrap, redis_url, registry_url, embedded=not external):
            console.print(line, highlight=False)
        c = workload.counts
        console.print(f"workload: {n:,} records ({workload.mean_value_bytes:.0f} B mean value), "
                      f"{c['entities']:,} entities of 100,000, {c['resent']:,} re-sent, {c['stale']:,} stale, "
                      f"{c['expected']:,} expected out; generated in {gen_s:.1f}s; {args.partitions} partitions; "
                      f"logs in {workdir}", highlight=False, soft_wrap=True)

        source = f"ingest.{run_id}"
        passthrough_dest = f"{run_id}-a.out"
        rounds = [round_labels(r, args.rounds) for r in range(args.rounds)]
        # Every run but the passthrough (first in a round) writes Redis keys under its own prefix.
        stack.callback(cleanup_redis, redis_url, [f"{run_id}-{label}:" for labels in rounds for label in labels[1:]])
        if cluster_url:
            stack.callback(cleanup_cluster, cluster_url, [f"{run_id}-k{labels[0][1:]}:" for labels in rounds])
        plan: list[tuple[Run, ...]] = []
        topics = {source, passthrough_dest}
        for a_label, f_label, b_label, c_label in rounds:
            f, topo_f = floor_run(f_label, run_id, services, workdir, args.partitions, n, args.run_deadline)
            b, topo_b = route_run(b_label, "route, 1 process", 1, run_id, services, workdir, args.partitions)
            c2, topo_c = route_run(c_label, "route, 2 processes", 2, run_id, services, workdir, args.partitions)
            group_a = f"{run_id}-{a_label}"
            a = Run(a_label, "passthrough", True, group_a,
                    [[sys.executable, "-m", "bench.passthrough", "--bootstrap", bootstrap, "--source", source,
                      "--dest", passthrough_dest, "--group", group_a, "--events", str(n),
                      "--deadline", str(args.run_deadline)]],
                    {**os.environ, "PYTHONPATH": str(ROOT)}, passthrough_dest, baseline=True)
            plan.append((a, f, b, c2))
            topics |= {*topo_f.catalog.all_topics(), *topo_b.catalog.all_topics(), *topo_c.catalog.all_topics()}
            if cluster_url:
                k, topo_k = route_run(f"k{a_label[1:]}", "route, 1 process, Redis Cluster", 1, run_id, services,
                                      workdir, args.partitions, cluster=True)
                plan[-1] += (k,)
                topics |= set(topo_k.catalog.all_topics())
        ensure_topics(admin_client(settings), [source, passthrough_dest], partitions=args.partitions)
        if external:  # the embedded broker keeps topics in memory and stops with the run
            stack.callback(lambda: admin_client(settings).delete_topics(sorted(topics), request_timeout=30))
        produce_s = produce_all(settings, source, workload.records, deadline_s=180)
        console.print(f"input produced to {source} in {produce_s:.1f}s ({n / produce_s:,.0f} records/s)",
                      highlight=False)

        service_cpu = ServiceCpu(redis_url, cluster_url)
        stack.callback(service_cpu.close)
        for run in (run for four in plan for run in four):  # a, f, b, c (k) of round 1, then of round 2, ...
            progress = GroupProgress(bootstrap, run.group, source, args.partitions)
            profile = workdir / "route-b.pyspy.txt" if args.profile and run is plan[0][2] else None
            console.print(f"({run.label}) {run.title} …", highlight=False)
            runs.append(run)
            execute(run, workdir, progress, service_cpu, n, args.run_deadline, profile)
            if run.cluster and cluster_url:
                per_master = keys_per_master(cluster_url, f"{run.group}:")
                run.key_share = [k / max(1, sum(per_master)) for k in per_master]
            if profile is not None and profile.exists():
                own, inclusive = top_functions(profile)
                for what, rows in (("own", own), ("inclusive", inclusive)):
                    console.print(f"(b) py-spy: top functions by {what} time, % of samples ({profile})",
                                  highlight=False, soft_wrap=True)
                    for frame, pct in rows:
                        console.print(f"  {pct:5.1f}%  {frame}", highlight=False, soft_wrap=True)
        for run in (run for each in plan for run in each[1:]):
            records, ids = read_event_ids(bootstrap, run.dest, expected, deadline_s=120)
            ok = ids == expected
            outputs_ok.append(ok)
            console.print(f"({run.label}) output {run.dest}: {records:,} records, {len(ids):,} distinct event ids, "
                          f"expected {len(expected):,}; missing {len(expected - ids):,}, "
                          f"unexpected {len(ids - expected):,} → {'ok' if ok else 'WRONG'}", highlight=False)


def round_labels(index: int, rounds: int) -> tuple[str, str, str, str]:
    """Labels of one round's (a) (f) (b) (c): plain letters for a single round, else a1, f1, b1, c1, a2, ..."""
    suffix = "" if rounds == 1 else str(index + 1)
    return f"a{suffix}", f"f{suffix}", f"b{suffix}", f"c{suffix}"


@dataclass(frozen=True)
class Summary:
    """Medians over the rounds, each ratio taken within its own round (a round's runs share the
    machine's state of the moment)."""

    route_eps: float
    passthrough_eps: float
    ratio: float  # (b)/(a)
    ratio_2x: float  # (c)/(b)
    floor_ratio: float  # (f)/(a): the most one Python process doing this work reached
    of_floor: float  # (b)/(f)
    ceiling_2x: float  # cores / (b)'s host cores: the most (c)/(b) can be here if an event costs both the same
    cpu_2x: float  # (c)'s CPU per event / (b)'s: what a second process costs per event (1.0 = nothing)
    complete: bool  # every run finished
    cluster_ratio: float = 0.0  # (k)/(b): events/s on the cluster against the standalone Redis
    cluster_redis: float = 0.0  # (k)'s Redis CPU per event (all masters) / (b)'s (target <= 1.2)
    cluster_max_share: float = 0.0  # the largest share of (k)'s keys on one master (target <= 0.4)


def summary(runs: list[Run], rounds: int, cores: int) -> Summary:
    by_label = {r.label: r for r in runs}
    fours = []
    for index in range(rounds):
        fours.append(tuple(by_label.get(label, Run(label, "", False, "", [], {}, ""))
                           for label in round_labels(index, rounds)))
    return Summary(statistics.median(b.eps for _, _, b, _ in fours), statistics.median(a.eps for a, *_ in fours),
                   statistics.median(ratio(b.eps, a.eps) for a, _, b, _ in fours),
                   statistics.median(ratio(c.eps, b.eps) for _, _, b, c in fours),
                   statistics.median(ratio(f.eps, a.eps) for a, f, _, _ in fours),
                   statistics.median(ratio(b.eps, f.eps) for _, f, b, _ in fours),
                   statistics.median(ratio(cores, b.host_cores) for _, _, b, _ in fours),
                   statistics.median(ratio(c.cpu_us, b.cpu_us) for _, _, b, c in fours),
                   all(r.complete for four in fours for r in four), *cluster_figures(runs, rounds))


def cluster_figures(runs: list[Run], rounds: int) -> tuple[float, float, float]:
    """Medians over the rounds of (k)/(b) events/s and Redis CPU per event, and the worst key share."""
    by_label = {r.label: r for r in runs}
    pairs = [(by_label[b], by_label[k]) for i in range(rounds)
             for b, k in [(round_labels(i, rounds)[2], f"k{round_labels(i, rounds)[0][1:]}")]
             if b in by_label and k in by_label]
    if not pairs:
        return 0.0, 0.0, 0.0
    return (statistics.median(ratio(k.eps, b.eps) for b, k in pairs),
            statistics.median(ratio(k.service_cpu_us.get("cluster", 0.0), b.service_cpu_us.get("redis", 0.0))
                              for b, k in pairs),
            max(max(k.key_share or [0.0]) for _, k in pairs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.route_bench",
                                     description="route-worker throughput against the passthrough ceiling")
    parser.add_argument("--events", type=int, default=200_000, help="records to produce (default 200000)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of every topic (default 4)")
    parser.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    parser.add_argument("--run-deadline", type=float, default=240.0, help="seconds each of (a) (f) (b) (c) may take")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat (a) (f) (b) (c) this many times and report medians (default 1; 3 on a shared VM)")
    parser.add_argument("--redis-cluster", action="store_true",
                        help="also run (k): one route process on a local 3-master Redis Cluster")
    parser.add_argument("--profile", action="store_true",
                        help="record (b)'s worker with py-spy (pip install py-spy) and print the top 10 functions")
    args = parser.parse_args(argv)
    if args.events < 1 or args.partitions < 1 or args.rounds < 1:
        parser.error("--events, --partitions and --rounds must be at least 1")
    console = Console(width=170)
    started = time.monotonic()
    runs: list[Run] = []
    outputs_ok: list[bool] = []
    failed = ""
    try:
        bench(args, console, runs, outputs_ok)
    except (Exception, SystemExit) as exc:  # still end with a RESULT line, saying output_ok=false
        failed = f"{type(exc).__name__}: {exc}"
        console.print(f"[red]benchmark failed:[/] {failed}", highlight=False)
    if runs:
        report(console, runs)
    cores = psutil.cpu_count() or 1
    s = summary(runs, args.rounds, cores)
    checked = (4 if args.redis_cluster else 3) * args.rounds
    output_ok = not failed and s.complete and outputs_ok == [True] * checked
    medians = f"medians of {args.rounds} rounds: " if args.rounds > 1 else ""
    console.print(f"{medians}floor (f)/(a) = {s.floor_ratio:.2f}: the hand-written loop that does only a route "
                  f"worker's work; `router route` reaches (b)/(f) = {s.of_floor:.2f} of it. ceiling of (c)/(b) on "
                  f"this {cores}-core machine ≈ {cores} / (b)'s host cores = {s.ceiling_2x:.2f}: two processes "
                  "cannot use more than every core (exact if an event costs (c) what it costs (b)); CPU per event "
                  f"(c)/(b) = {s.cpu_2x:.2f}: what scaling out costs per event, whatever the core count",
                  highlight=False, soft_wrap=True)
    console.print(f"{medians}ratio (b)/(a) = {s.ratio:.2f} (target ≥ 0.5: {'met' if s.ratio >= 0.5 else 'NOT met'}); "
                  f"ratio_2x (c)/(b) = {s.ratio_2x:.2f} (target ≥ 1.8: {'met' if s.ratio_2x >= 1.8 else 'NOT met'}); "
                  f"whole run {time.monotonic() - started:.0f}s", highlight=False)
    cluster = ""
    if args.redis_cluster:
        console.print(f"{medians}Redis Cluster (k)/(b): events/s {s.cluster_ratio:.2f}; Redis CPU per event "
                      f"{s.cluster_redis:.2f} (target ≤ 1.2: {'met' if 0 < s.cluster_redis <= 1.2 else 'NOT met'}); "
                      f"largest share of keys on one master {s.cluster_max_share:.0%} (target ≤ 40%: "
                      f"{'met' if 0 < s.cluster_max_share <= 0.4 else 'NOT met'})", highlight=False)
        cluster = (f" cluster_ratio={s.cluster_ratio:.3f} cluster_redis_ratio={s.cluster_redis:.3f} "
                   f"cluster_max_share={s.cluster_max_share:.3f}")
    print(f"RESULT route_eps={s.route_eps:.0f} passthrough_eps={s.passthrough_eps:.0f} ratio={s.ratio:.3f} "
          f"ratio_2x={s.ratio_2x:.3f}{cluster} output_ok={'true' if output_ok else 'false'}", flush=True)
    return 0 if output_ok else 1


if __name__ == "__main__":
    sys.exit(main())

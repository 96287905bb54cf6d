"""Delivery-worker throughput against a minimal HTTP client, same batches, same partner. Run from
the repository root:

    .venv/bin/python -m bench.deliver_bench [--records N] [--rounds R] [--profile]

One partner simulator (`router sim partner`, unthrottled) for the whole run. Each round, for batch
50 then batch 1: N records (N/5 at batch 1) are produced to a fresh delivery topic, then (c) the
baseline client (bench.deliver_client) posts the same batches, byte for byte, and (w) one
`router deliver` process delivers the topic. Both are separate processes, so neither shares an
interpreter with the other or with this bench. Each rate and CPU figure is taken over the window
from the first record the partner accepted to the last (the simulator's ledger times every
acceptance), and each run's ledger must hold every record accepted exactly once. The last line
printed is machine-readable (the RESULT line); see bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka.schema_registry import SchemaRegistryClient
from rich.console import Console
from rich.table import Table

from bench.route_bench import (
    GroupProgress,
    ServiceCpu,
    cleanup_redis,
    cpu_seconds,
    host_busy_seconds,
    machine_facts,
    profiler,
    ratio,
    top_functions,
)
from consumers.deliver.payload import batch_body, batch_idempotency_key, idempotency_key, to_json
from router import codec
from router import headers as h
from router import ready as ready_line
from router.errors import ConfigError
from router.settings import Settings
from support.delivering import Partner, delivery_records, http_spec
from support.routing import Topology, make_topology, prepare_services, produce, zendesk_event
from support.services import kafka_service, redis_service, start_registry, unique
from support.workers import worker_env
from tools.dev.embedded.procs import ChildProcess

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.05
TICKETS = 100_000  # entity keys drawn from this many tickets: some keys hold several records
TARGETS = {"ratio_b50": 0.5, "ratio_b1": 0.8, "cpu_us_b50": 25.0}


@dataclass
class Run:
    """One measured process: the client or a worker, at one batch size."""

    label: str  # c50, w50, c1, w1 (then .2, .3 ... for later rounds); o50, o1 for --lanes-from
    title: str
    batch: int
    records: int
    destination: str
    expected: set[str] = field(repr=False)  # the idempotency keys its ledger must hold, once each
    baseline: bool = False
    rps: float = 0.0
    cpu_us: float = 0.0
    service_us: dict[str, float] = field(default_factory=dict)
    host_cores: float = 0.0
    other_cores: float = 0.0
    window_s: float = 0.0
    accepted_once: bool = False
    note: str = ""
    log: Path | None = None

    @property
    def ok(self) -> bool:
        return self.accepted_once and self.rps > 0


@dataclass
class Samples:
    """(wall time, CPU seconds by name) every POLL_S: interpolated at the ledger's first and last time."""

    rows: list[tuple[float, dict[str, float]]] = field(default_factory=list)

    def add(self, cpu: dict[str, float]) -> None:
        self.rows.append((time.time(), cpu))

    def at(self, when: float, name: str) -> float:
        rows = [(t, c[name]) for t, c in self.rows if name in c]
        if not rows:
            return 0.0
        if when <= rows[0][0]:
            return rows[0][1]
        for (t0, v0), (t1, v1) in itertools.pairwise(rows):
            if t0 <= when <= t1:
                return v0 + (v1 - v0) * ((when - t0) / (t1 - t0) if t1 > t0 else 1.0)
        return rows[-1][1]


@dataclass
class Job:
    """One batch size of one round: its spec, records and requests, shared by (c) and (w)."""

    name: str
    batch: int
    topo: Topology
    keys: set[str]
    requests: Path


# ---- input ----------------------------------------------------------------------------------

def prepare_job(name: str, batch: int, records: int, seed: int, services: Services, workdir: Path,
                partner_url: str, partitions: int) -> Job:
    """A spec delivering ``delivery.<name>`` to the simulator in batches of ``batch``; its topic holds
    ``records`` route-worker outputs, and a file holds the same batches as requests for (c)."""
    (workdir / name).mkdir()
    topo = make_topology(workdir / name, name, {"bench": http_spec(name, name, name, f"{partner_url}/v1/{name}",
                                                                   batch=batch)})
    schema_ids = prepare_services(services.settings, services.registry_url, topo, partitions)
    rng = random.Random(seed)
    events = [zendesk_event(f"e{i}", rng.randrange(TICKETS), i, title=f"Checkout down #{i}",
                            priority=rng.choice(["low", "med", "high"])) for i in range(records)]
    out = delivery_records(topo, schema_ids, events)
    produce(services.bootstrap, f"delivery.{name}", out)
    decoded: list[tuple[str, Any]] = []
    with SchemaRegistryClient({"url": services.registry_url}) as registry:
        schemas = codec.Codec(codec.registry_fetch(registry))
        for _key, value, headers in out:
            hdrs = {k: v.decode() for k, v in headers}
            ikey = idempotency_key(hdrs[h.TENANT], hdrs[h.INTEGRATION], hdrs[h.EVENT_ID])
            decoded.append((ikey, schemas.decode_fetching(value)))
    lines = []
    for start in range(0, len(decoded), batch):
        chunk = decoded[start:start + batch]
        keys = [k for k, _ in chunk]
        if batch == 1:
            body, key = to_json(chunk[0][1]), keys[0]
        else:
            body = batch_body([r for _, r in chunk], keys, "records", "idempotency_key")
            key = batch_idempotency_key(keys)
        lines.append(key.encode() + b"\t" + body)
    requests = workdir / f"{name}.requests"
    requests.write_bytes(b"\n".join(lines))
    return Job(name, batch, topo, {k for k, _ in decoded}, requests)


# ---- one run --------------------------------------------------------------------------------

@dataclass
class Services:
    bootstrap: str
    redis_url: str
    registry_url: str
    settings: Settings
    partner: Partner
    partner_pid: int


def execute(run: Run, argv: list[str], env: dict[str, str], services: Services, service_cpu: ServiceCpu,
            workdir: Path, deadline_s: float, progress: GroupProgress | None, profile: Path | None) -> None:
    """Start the run's process, sample CPU until it is done (the client exits; a worker has committed
    every record), stop it, then read the ledger and fill ``run``."""
    run.log = workdir / f"{run.label}.log"
    proc = ChildProcess(run.title, argv, log=run.log, env=env)
    ps, sim = psutil.Process(proc.pid), psutil.Process(services.partner_pid)
    samples = Samples()
    end = time.monotonic() + deadline_s
    try:
        with contextlib.ExitStack() as stack:
            start_profile = stack.enter_context(profiler(proc.pid, profile)) if profile else None
            while True:
                tick = time.monotonic()
                try:
                    cpu = {"proc": cpu_seconds(ps), "sim": cpu_seconds(sim), "host": host_busy_seconds(),
                           **service_cpu.sample()}
                except psutil.NoSuchProcess:
                    cpu = {}
                if cpu:
                    samples.add(cpu)
                if progress is None:
                    if proc.proc.poll() is not None:
                        break
                else:
                    committed = progress.committed()
                    if committed and start_profile is not None:
                        start_profile()
                        start_profile = None
                    if committed >= run.records:
                        break
                    if proc.proc.poll() is not None:
                        run.note = f"the worker exited at {committed}/{run.records} committed"
                        break
                if time.monotonic() > end:
                    run.note = f"deadline {deadline_s:.0f}s passed"
                    break
                time.sleep(max(0.0, POLL_S - (time.monotonic() - tick)))
    finally:
        proc.stop(grace_s=20)
        if progress is not None:
            progress.close()
    judge(run, services.partner.ledger(run.destination), samples)


def judge(run: Run, ledger: dict[str, Any], samples: Samples) -> None:
    """Every record accepted exactly once (none missing, none sent twice); the rate and CPU over the
    window from the partner's first acceptance to its last."""
    accepted: dict[str, int] = ledger["accepted"]
    expected = run.expected
    missing, extra = len(expected - accepted.keys()), len(accepted.keys() - expected)
    duplicates = sum(ledger["duplicates"].values())
    run.accepted_once = not missing and not extra and not duplicates and set(accepted.values()) <= {1}
    if not run.accepted_once:
        run.note += f" ledger: {len(accepted):,} accepted, {missing:,} missing, {extra:,} unexpected, " \
                    f"{duplicates:,} sent again"
    times = sorted(r["at"] / 1000 for r in ledger["records"])
    if len(times) < 2 or times[-1] <= times[0]:
        return
    t0, t1 = times[0], times[-1]
    run.window_s = t1 - t0
    after = sum(1 for t in times if t > t0)  # records accepted after the first instant: the window's work
    run.rps = after / run.window_s
    used = {name: samples.at(t1, name) - samples.at(t0, name) for name in ("proc", "sim", "redis", "broker", "bench")}
    run.cpu_us = used["proc"] / after * 1e6
    run.service_us = {name: used[name] / after * 1e6 for name in ("sim", "redis", "broker")}
    host = samples.at(t1, "host") - samples.at(t0, "host")
    run.host_cores = host / run.window_s
    run.other_cores = max(0.0, host - sum(used.values())) / run.window_s


def client_run(label: str, job: Job, services: Services, service_cpu: ServiceCpu, workdir: Path,
               deadline_s: float) -> Run:
    destination = f"{job.name}-client"
    run = Run(label, f"client, batch {job.batch}", job.batch, len(job.keys), destination, job.keys, baseline=True)
    argv = [sys.executable, "-m", "bench.deliver_client", "--url", f"{services.partner.url}/v1/{destination}",
            "--requests", str(job.requests), "--concurrency", "8"]
    execute(run, argv, {**os.environ, "PYTHONPATH": str(ROOT)}, services, service_cpu, workdir, deadline_s, None,
            None)
    return run


def worker_run(label: str, title: str, job: Job, services: Services, service_cpu: ServiceCpu, workdir: Path,
               deadline_s: float, partitions: int, lanes_from: Path | None, profile: Path | None) -> Run:
    run = Run(label, title, job.batch, len(job.keys), job.name, job.keys)
    group = f"{job.name}-{label}"
    env = {**worker_env(services.bootstrap, services.redis_url, services.registry_url, f"{job.name}:"),
           "PYTHONPATH": str(ROOT)}
    head = [sys.executable, "-m", "bench.lanes_swap", str(lanes_from)] if lanes_from else [sys.executable, "-m",
                                                                                             "router"]
    argv = [*head, "deliver", "--integrations", str(job.topo.integrations), "--schemas", str(job.topo.schemas),
            "--group", group]
    progress = GroupProgress(services.bootstrap, group, f"delivery.{job.name}", partitions)
    execute(run, argv, env, services, service_cpu, workdir, deadline_s, progress, profile)
    return run


def floor_run(label: str, job: Job, services: Services, service_cpu: ServiceCpu, workdir: Path, deadline_s: float,
              partitions: int) -> Run:
    """(f) bench.deliver_floor on the same topic, posting to its own destination (its own ledger)."""
    destination = f"{job.name}-floor"
    run = Run(label, f"floor, batch {job.batch}", job.batch, len(job.keys), destination, job.keys)
    group = f"{job.name}-{label}"
    env = {**worker_env(services.bootstrap, services.redis_url, services.registry_url, f"{job.name}:"),
           "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "bench.deliver_floor", "--url", f"{services.partner.url}/v1/{destination}",
            "--group", group, "--topic", f"delivery.{job.name}", "--batch", str(job.batch)]
    progress = GroupProgress(services.bootstrap, group, f"delivery.{job.name}", partitions)
    execute(run, argv, env, services, service_cpu, workdir, deadline_s, progress, None)
    return run


# ---- the report -----------------------------------------------------------------------------

def report(console: Console, runs: list[Run]) -> None:
    table = Table(title="delivery throughput, from the partner's first acceptance to its last")
    for name in ("run", "records", "records/s (vs c)", "CPU µs/rec (vs c)", "sim µs/rec", "redis µs/rec",
                 "host cores", "other cores", "window", "ledger"):
        table.add_column(name, justify="left" if name == "run" else "right", no_wrap=name == "run")
    base: Run | None = None
    for r in runs:
        if r.baseline:
            base = r
        b_rps, b_cpu = (base.rps, base.cpu_us) if base is not None else (0.0, 0.0)
        table.add_row(f"({r.label}) {r.title}", f"{r.records:,}", f"{r.rps:,.0f} ({ratio(r.rps, b_rps):.2f})",
                      f"{r.cpu_us:,.1f} ({ratio(r.cpu_us, b_cpu):.2f})", f"{r.service_us.get('sim', 0):,.0f}",
                      f"{r.service_us.get('redis', 0):,.1f}", f"{r.host_cores:.2f}", f"{r.other_cores:.2f}",
                      f"{r.window_s:.1f}s", "once each" if r.accepted_once else "[red]WRONG[/]")
    console.print(table)
    console.print("CPU µs/rec: the process's user+system time (every thread) per record; sim: the partner simulator's; "
                  f"host cores: CPU busy on this {psutil.cpu_count()}-core machine in the window; other cores: the "
                  "part used by none of the process, the simulator, the broker, Redis or this bench",
                  highlight=False, soft_wrap=True)
    for r in runs:
        if r.note or r.other_cores > 0.2:
            console.print(f"({r.label}) {r.note.strip()}" + (" [yellow]other load > 0.2 cores[/]"
                                                              if r.other_cores > 0.2 else ""), highlight=False)


def median_of(runs: list[Run], kind: str, what: str) -> float:
    """Median over rounds of one figure of the runs of one kind (``w50`` matches w50, w50.2, ...)."""
    values = [getattr(r, what) for r in runs if r.label.partition(".")[0] == kind]
    return statistics.median(values) if values else 0.0


def round_ratio(runs: list[Run], worker: str, client: str) -> float:
    """Median over rounds of worker / client records/s, each ratio taken within its own round."""
    by = {r.label: r for r in runs}
    rounds = sorted({r.label.partition(".")[2] for r in runs})
    values = [ratio(by[f"{worker}{s and '.' + s}"].rps, by[f"{client}{s and '.' + s}"].rps) for s in rounds
              if f"{worker}{s and '.' + s}" in by and f"{client}{s and '.' + s}" in by]
    return statistics.median(values) if values else 0.0


def print_profile(console: Console, label: str, raw: Path, n: int = 10) -> None:
    """The ``n`` functions with most own time, and the project's functions (consumers/, router/)
    with most inclusive time below the entry points (those on ≥ 80% of the samples), in %."""
    own, _ = top_functions(raw, n)
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            total += int(count)
            for frame in {f for f in stack.split(";") if "(consumers/" in f or "(router/" in f}:
                inclusive[frame] += int(count)
    inner = [(f, 100 * c / total) for f, c in inclusive.most_common() if c < 0.8 * total][:n]
    for what, rows in (("own time", own), ("inclusive time, project functions", inner)):
        console.print(f"({label}) py-spy: top functions by {what}, % of samples ({raw})", highlight=False,
                      soft_wrap=True)
        for frame, pct in rows:
            console.print(f"  {pct:5.1f}%  {frame}", highlight=False, soft_wrap=True)


# ---- the whole run --------------------------------------------------------------------------

@contextlib.contextmanager
def partner_process(workdir: Path) -> Any:
    """`router sim partner`, unthrottled, on a free loopback port; yields (Partner, pid)."""
    log = workdir / "partner.log"
    proc = ChildProcess("partner simulator", [sys.executable, "-m", "router", "sim", "partner", "--port", "0"],
                        log=log, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        try:
            proc.wait_until(lambda: bool(ready_line.read_pairs(log).get("partner")), 30, "printing READY")
        except ConfigError as exc:
            raise SystemExit(f"the partner simulator did not start: {exc}") from None
        yield Partner(ready_line.read_pairs(log)["partner"]), proc.pid
    finally:
        proc.stop(grace_s=10)


def bench(args: argparse.Namespace, console: Console, runs: list[Run]) -> None:
    run_id = unique("dbench")
    workdir = Path(tempfile.mkdtemp(prefix="deliver-bench-"))
    external = bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    with contextlib.ExitStack() as stack:
        bootstrap = stack.enter_context(kafka_service())
        redis_url = stack.enter_context(redis_service())
        registry_url = os.environ.get("SCHEMA_REGISTRY_URL") or stack.enter_context(start_registry(bootstrap, workdir))
        partner, partner_pid = stack.enter_context(partner_process(workdir))
        settings = Settings(kafka_bootstrap_servers=bootstrap, redis_url=redis_url, session_timeout_ms=6000,
                            topic_partitions=args.partitions)
        services = Services(bootstrap, redis_url, registry_url, settings, partner, partner_pid)
        for line in machine_facts(bootstrap, redis_url, registry_url, embedded=not external):
            console.print(line, highlight=False)
        console.print(f"partner simulator {partner.url} (unthrottled); {args.partitions} partitions; logs in {workdir}",
                      highlight=False)
        names: list[str] = []
        stack.callback(lambda: cleanup_redis(redis_url, [f"{n}:" for n in names]))
        service_cpu = ServiceCpu(redis_url)
        stack.callback(service_cpu.close)
        for index in range(args.rounds):
            suffix = "" if index == 0 else f".{index + 1}"
            for batch, records in ((50, args.records), (1, max(100, args.records // 5))):
                # Each worker run needs its own topic, group, delivered keys and ledger: its own job.
                name = f"{run_id}-b{batch}" + (f"-r{index + 1}" if index else "")  # names: [a-z0-9-]
                plan: list[tuple[str, str, Path | None, str]] = [
                    (f"w{batch}{suffix}", f"router deliver, batch {batch}", None, name)]
                if args.lanes_from:
                    plan.append((f"o{batch}{suffix}", f"router deliver ({args.lanes_from.name}), batch {batch}",
                                 args.lanes_from, f"{name}-o"))
                if index % 2:  # A/B in alternating order: neither side always runs on the warmer machine
                    plan.reverse()
                started = time.monotonic()
                jobs = {}
                for *_, job_name in plan:
                    names.append(job_name)
                    jobs[job_name] = prepare_job(job_name, batch, records, args.seed + index, services, workdir,
                                                 partner.url, args.partitions)
                where = "each of 2 topics" if len(jobs) > 1 else "its topic"
                console.print(f"batch {batch}: {records:,} records produced to {where} and "
                              f"{-(-records // batch):,} requests written in {time.monotonic() - started:.1f}s",
                              highlight=False)
                console.print(f"(c{batch}{suffix}) client, batch {batch} …", highlight=False)
                runs.append(client_run(f"c{batch}{suffix}", jobs[name], services, service_cpu, workdir,
                                       args.run_deadline))
                for label, title, lanes_from, job_name in plan:
                    profile = workdir / f"{label}.pyspy.txt" if args.profile and index == 0 and batch == 50 else None
                    console.print(f"({label}) {title} …", highlight=False)
                    runs.append(worker_run(label, title, jobs[job_name], services, service_cpu, workdir,
                                           args.run_deadline, args.partitions, lanes_from, profile))
                    if profile is not None and profile.exists():
                        print_profile(console, label, profile)
                if args.floor:
                    console.print(f"(f{batch}{suffix}) floor, batch {batch} …", highlight=False)
                    runs.append(floor_run(f"f{batch}{suffix}", jobs[name], services, service_cpu, workdir,
                                          args.run_deadline, args.partitions))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.deliver_bench",
                                     description="delivery-worker throughput against a minimal aiohttp client")
    parser.add_argument("--records", type=int, default=200_000,
                        help="records at batch 50 (default 200000); batch 1 uses a fifth of them")
    parser.add_argument("--rounds", type=int, default=1, help="repeat and report medians (default 1; 3 on a shared VM)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of each delivery topic (default 4)")
    parser.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    parser.add_argument("--run-deadline", type=float, default=120.0, help="seconds each run may take (default 120)")
    parser.add_argument("--profile", action="store_true",
                        help="record the first batch-50 worker with py-spy (pip install py-spy), print top functions")
    parser.add_argument("--floor", action="store_true",
                        help="also run bench.deliver_floor (consume, decode, encode, post: no lanes, Redis or DLQ)")
    parser.add_argument("--lanes-from", type=Path, default=None, metavar="LANES_PY",
                        help="also run each worker with consumers/deliver/lanes.py replaced by this file (A/B)")
    args = parser.parse_args(argv)
    if args.records < 100 or args.rounds < 1 or args.partitions < 1:
        parser.error("--records must be at least 100, --rounds and --partitions at least 1")
    console = Console(width=190)
    started = time.monotonic()
    runs: list[Run] = []
    failed = ""
    try:
        bench(args, console, runs)
    except (Exception, SystemExit) as exc:  # still end with a RESULT line, saying output_ok=false
        failed = f"{type(exc).__name__}: {exc}"
        console.print(f"[red]benchmark failed:[/] {failed}", highlight=False)
    if runs:
        report(console, runs)
    figures = {"deliver_rps": median_of(runs, "w50", "rps"), "client_rps": median_of(runs, "c50", "rps"),
               "ratio_b50": round_ratio(runs, "w50", "c50"), "ratio_b1": round_ratio(runs, "w1", "c1"),
               "cpu_us_b50": median_of(runs, "w50", "cpu_us")}
    expected_runs = args.rounds * ((6 if args.lanes_from else 4) + (2 if args.floor else 0))
    output_ok = not failed and len(runs) == expected_runs and all(r.ok for r in runs)
    medians = f"medians of {args.rounds} rounds: " if args.rounds > 1 else ""
    met = {k: (figures[k] <= v if k.startswith("cpu") else figures[k] >= v) for k, v in TARGETS.items()}
    console.print(f"{medians}batch 1: worker {median_of(runs, 'w1', 'rps'):,.0f} records/s, client "
                  f"{median_of(runs, 'c1', 'rps'):,.0f}, worker CPU {median_of(runs, 'w1', 'cpu_us'):,.0f} µs/record",
                  highlight=False)
    if args.lanes_from:
        console.print(f"{medians}lanes from {args.lanes_from}: batch 50 {median_of(runs, 'o50', 'rps'):,.0f} "
                      f"records/s at {median_of(runs, 'o50', 'cpu_us'):,.0f} µs/record (ratio "
                      f"{round_ratio(runs, 'o50', 'c50'):.2f}), batch 1 {median_of(runs, 'o1', 'rps'):,.0f} records/s "
                      f"(ratio {round_ratio(runs, 'o1', 'c1'):.2f})", highlight=False)
    if args.floor:
        console.print(f"{medians}floor (bench.deliver_floor): batch 50 {median_of(runs, 'f50', 'rps'):,.0f} records/s "
                      f"at {median_of(runs, 'f50', 'cpu_us'):,.1f} µs/record (ratio to the client "
                      f"{round_ratio(runs, 'f50', 'c50'):.2f}; the worker reaches "
                      f"{round_ratio(runs, 'w50', 'f50'):.2f} of it), batch 1 {median_of(runs, 'f1', 'rps'):,.0f} "
                      f"records/s (ratio to the client "
                      f"{round_ratio(runs, 'f1', 'c1'):.2f}; the worker {round_ratio(runs, 'w1', 'f1'):.2f} of it)",
                      highlight=False)
    verdicts = {k: "met" if ok else "NOT met" for k, ok in met.items()}
    console.print(f"{medians}targets: ratio_b50 {figures['ratio_b50']:.2f} (≥ 0.5: {verdicts['ratio_b50']}), "
                  f"ratio_b1 {figures['ratio_b1']:.2f} (≥ 0.8: {verdicts['ratio_b1']}), "
                  f"cpu_us_b50 {figures['cpu_us_b50']:.0f} (≤ 25: {verdicts['cpu_us_b50']}); "
                  f"whole run {time.monotonic() - started:.0f}s", highlight=False)
    print(f"RESULT deliver_rps={figures['deliver_rps']:.0f} client_rps={figures['client_rps']:.0f} "
          f"ratio_b50={figures['ratio_b50']:.3f} ratio_b1={figures['ratio_b1']:.3f} "
          f"cpu_us_b50={figures['cpu_us_b50']:.1f} output_ok={'true' if output_ok else 'false'}", flush=True)
    return 0 if output_ok else 1


if __name__ == "__main__":
    sys.exit(main())

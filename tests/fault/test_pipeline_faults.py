"""The fault tier: the whole pipeline as real processes, hurt while it works (issue 14).

gateway → ingest topic → 2 route workers → delivery topic → 2 delivery workers → partner simulator,
on the session's broker and schema registry and a Redis of the test's own. A well-behaved partner
client posts a few thousand signed webhooks (entities with versions in order, exact re-sends,
stale versions, poison) and retries each until it gets 202, while, at points drawn from a seed:
the gateway, a route worker and a delivery worker are SIGKILLed several times each (one member
of a group at a time, restarted at once), Redis is frozen (SIGSTOP) for 8 s, and the partner
answers 503, then 429, for 5 s each. Then, once the pipeline is idle (every group has committed
everything it was given), DESIGN §4 must hold: each expected event accepted by the partner exactly
once and in per-entity order, nothing stale or poison accepted, one DLQ record with its code per
poison record.

Run it (about 80 s on a 2-core host; the seed is printed first, and a failure names it):

    .venv/bin/pytest tests/fault -x -p no:cacheprovider -s

Replay a failure, or run longer:

    FAULT_SEED=1234 .venv/bin/pytest tests/fault -p no:cacheprovider -s
    FAULT_EVENTS=20000 FAULT_KILLS=40 FAULT_SEED=7 .venv/bin/pytest tests/fault -p no:cacheprovider -s

Knobs: ``FAULT_SEED`` (default 20261122), ``FAULT_EVENTS`` (posts, 3000), ``FAULT_KILLS`` (SIGKILLs
over gateway, route and deliver, 9), ``FAULT_RATE`` (posts per second, 50; the fault phase lasts
events / rate, longer if the kills need it), ``FAULT_SKIP`` (comma list of gateway, route,
deliver, redis, partner, or ``all``: ``FAULT_SKIP=all`` checks the harness on a healthy
pipeline), ``FAULT_DRAIN_S`` (how long the pipeline gets to go idle after the last post, 140),
``FAULT_TIMEOUT`` (the test's timeout; by default 285 s, more when the knobs ask for a longer run).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from router.devsecrets import DEV_SECRETS
from router.procs import free_port
from router.settings import Settings
from router.spec.sources import decode_standard_webhooks_secret
from support.delivering import http_spec, partner_sim
from support.routing import make_topology, prepare_services
from support.services import unique, wait_for
from support.workers import worker_env
from tests.fault.checks import (
    DeadLetter,
    IngestRecord,
    check_dead_letters,
    check_delivery_dlq,
    check_ingest,
    check_ledger,
)
from tests.fault.faults import ALL_KINDS, FaultRunner, phase_needed_s, plan_faults
from tests.fault.processes import GroupOffsets, Service, Supervisor, TopicReader, WebhookSender, headers_of, int_header
from tests.fault.workload import build_workload
from tools.dev.embedded.redis import start_redis

TENANT = "acme"
SECRET_VAR = "ZENDESK_WEBHOOK_SECRET"


@dataclass(frozen=True)
class FaultConfig:
    seed: int
    events: int
    kills: int
    rate: float
    kinds: tuple[str, ...]
    drain_s: float
    clients: int = 4

    @classmethod
    def from_env(cls) -> FaultConfig:
        env = os.environ
        skip = {s.strip() for s in env.get("FAULT_SKIP", "").split(",") if s.strip()}
        unknown = skip - {*ALL_KINDS, "all"}
        if unknown:
            raise ValueError(f"FAULT_SKIP: unknown {sorted(unknown)}; use {', '.join(ALL_KINDS)} or all")
        kinds = () if "all" in skip else tuple(k for k in ALL_KINDS if k not in skip)
        return cls(seed=int(env.get("FAULT_SEED") or 20261122), events=int(env.get("FAULT_EVENTS") or 3000),
                   kills=int(env.get("FAULT_KILLS") or 9), rate=float(env.get("FAULT_RATE") or 50),
                   kinds=kinds, drain_s=float(env.get("FAULT_DRAIN_S") or 140))

    @property
    def duration_s(self) -> float:
        """How long the partner keeps posting: the fault phase."""
        return max(self.events / self.rate, phase_needed_s(self.kills, self.kinds))

    def describe(self) -> str:
        return (f"FAULT_SEED={self.seed} FAULT_EVENTS={self.events} FAULT_KILLS={self.kills} FAULT_RATE={self.rate:g} "
                f"FAULT_SKIP={','.join(k for k in ALL_KINDS if k not in self.kinds) or '-'}")


CONFIG = FaultConfig.from_env()
TIMEOUT_S = float(os.environ.get("FAULT_TIMEOUT") or (
    285 if CONFIG.duration_s <= 65 and CONFIG.drain_s <= 140 else CONFIG.duration_s + CONFIG.drain_s + 150))


def fault_spec(name: str, source: str, destination: str, partner_url: str) -> str:
    """Zendesk-like tickets to the simulator, one record per request, stale versions dropped."""
    spec = http_spec(name, source, destination, f"{partner_url}/v1/{destination}")
    spec = spec.replace("ordering: {on_stale: deliver}", "ordering: {on_stale: drop}")
    spec = spec.replace("  entity_key: data.ticket.id\n", "  entity_key: data.ticket.id\n  version: sequence\n")
    assert "on_stale: drop" in spec and "version: sequence" in spec, spec
    return spec


def write_source(folder: Path, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{source}.yaml").write_text(
        f"name: {source}\ntenants: ['*']\n"
        f"signature: {{scheme: standard_webhooks, secrets: ['env:{SECRET_VAR}'], tolerance: 5m}}\n"
        "event_id: event_id\nevent_type: type\nentity_key: data.ticket.id\n")
    return folder


def router_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "router", *args]


@pytest.mark.timeout(TIMEOUT_S)
def test_pipeline_keeps_its_delivery_guarantee_under_faults(kafka_bootstrap: str, registry_url: str,
                                                             tmp_path: Path) -> None:
    cfg = CONFIG
    print(f"\nfault run: {cfg.describe()} (phase {cfg.duration_s:.0f}s, timeout {TIMEOUT_S:.0f}s, logs {tmp_path})",
          flush=True)
    name = unique("fault")
    source, destination = name, f"{name}-pd"
    ingest_topic, delivery_topic = f"ingest.{source}", f"delivery.{destination}"
    workload = build_workload(cfg.seed, cfg.events)
    print(f"workload: {workload.summary()}", flush=True)
    logs = tmp_path / "logs"
    logs.mkdir()
    stop = threading.Event()
    with contextlib.ExitStack() as stack:
        stack.callback(stop.set)
        redis_child, redis_url = start_redis(log=logs / "redis.log")  # ours: we may SIGSTOP it
        stack.callback(redis_child.stop)
        partner = stack.enter_context(partner_sim(logs))
        topo = make_topology(tmp_path, name, {"fault": fault_spec(name, source, destination, partner.url)})
        prepare_services(Settings(kafka_bootstrap_servers=kafka_bootstrap, session_timeout_ms=6000), registry_url, topo)

        env = worker_env(kafka_bootstrap, redis_url, registry_url, f"{name}:")
        env.pop("ROUTER_METRICS_PORT", None)
        env[SECRET_VAR] = DEV_SECRETS[SECRET_VAR]
        specs = ["--integrations", str(topo.integrations), "--schemas", str(topo.schemas)]
        port = free_port()
        sources = write_source(tmp_path / "sources", source)
        services = {"gateway": Service("gateway", router_argv(
            "gateway", "--port", str(port), "--dev-secrets", "--sources", str(sources)), env, logs)}
        for i in range(2):
            services[f"route-{i}"] = Service(f"route-{i}", router_argv("route", *specs, "--group", f"{name}.route"),
                                             env, logs)
            services[f"deliver-{i}"] = Service(f"deliver-{i}", router_argv(
                "deliver", *specs, "--group", f"{name}.deliver"), env, logs)
        groups = {"gateway": ["gateway"], "route": ["route-0", "route-1"], "deliver": ["deliver-0", "deliver-1"]}
        started = time.monotonic()
        supervisor = Supervisor(list(services.values()), started)
        stack.callback(supervisor.shutdown)
        for service in services.values():
            service.start()
        wait_for(lambda: all(s.ready() for s in services.values()) or not all(s.alive() for s in services.values()),
                 deadline_s=90, interval_s=0.2, what="gateway, route and deliver processes to print READY")
        exited = [s for s in services.values() if not s.alive()]
        assert not exited, "\n".join(f"{s.name} exited at start-up ({s.log}):\n{s.tail()}" for s in exited)
        supervisor.thread.start()

        def set_partner_rule(status: int | None) -> None:
            partner.call("DELETE", "/_control/rules")
            if status:
                partner.rules({"destination": destination, "match": {}, "status": status,
                               **({"retry_after": "1"} if status == 429 else {})})

        plan = plan_faults(cfg.seed, cfg.duration_s, cfg.kills, cfg.kinds, groups, load_s=cfg.events / cfg.rate)
        print("fault plan:\n  " + ("\n  ".join(f.describe() for f in plan) or "(none)"), flush=True)
        runner = FaultRunner(plan, services, groups, supervisor, redis_child.pid, set_partner_rule)
        stack.callback(runner.resume_redis)

        # ---- the fault phase: the partner posts at its pace, the faults land on their clock ----
        key = decode_standard_webhooks_secret(DEV_SECRETS[SECRET_VAR])
        senders = [WebhookSender(f"sender-{i}", f"http://127.0.0.1:{port}", f"/v1/hooks/{TENANT}/{source}", key,
                                 [(n / cfg.rate, p) for n, p in enumerate(workload.posts)
                                  if p.event.entity % cfg.clients == i]) for i in range(cfg.clients)]
        t0 = time.monotonic()
        threads = [threading.Thread(target=s.run, args=(t0, stop), name=s.name, daemon=True) for s in senders]

        def faults() -> None:
            # Faults start once the pipeline has delivered something: a harness that never got going
            # fails on that, not on a fault.
            try:
                wait_for(lambda: stop.is_set() or partner.ledger(destination)["accepted"], deadline_s=90,
                         interval_s=0.5, what="the first delivery at the partner (no fault applied)")
            except AssertionError as exc:
                runner.errors.append(str(exc))
                return
            runner.run(t0, stop)

        fault_thread = threading.Thread(target=faults, name="faults", daemon=True)
        for thread in [*threads, fault_thread]:
            thread.start()
        for thread in [*threads, fault_thread]:
            thread.join(max(1.0, t0 + cfg.duration_s + 150 - time.monotonic()))
        phase_s = time.monotonic() - t0
        stuck = [t.name for t in [*threads, fault_thread] if t.is_alive()]
        runner.resume_redis()
        set_partner_rule(None)

        # ---- the drain: wait until every group has committed all it was given, then check ----
        readers = {t: TopicReader(kafka_bootstrap, t) for t in
                   (ingest_topic, delivery_topic, f"{ingest_topic}.dlq", f"{delivery_topic}.dlq")}
        for reader in readers.values():
            stack.callback(reader.close)
        offsets = {g: GroupOffsets(kafka_bootstrap, f"{name}.{g}") for g in ("route", "deliver")}
        for probe in offsets.values():
            stack.callback(probe.close)
        drain_started = time.monotonic()
        not_idle = wait_idle(readers, offsets, ingest_topic, delivery_topic, cfg.drain_s)
        drain_s = time.monotonic() - drain_started
        for reader in readers.values():
            reader.poll()

        ledger = partner.ledger(destination)
        ingest = [IngestRecord(m.partition() or 0, m.offset() or 0, headers_of(m).get("router-event-id", ""))
                  for m in readers[ingest_topic].messages]
        dead: list[DeadLetter] = []
        for m in readers[f"{ingest_topic}.dlq"].messages:
            h = headers_of(m)
            dead.append(DeadLetter(int_header(h, "router-original-partition"), int_header(h, "router-original-offset"),
                                   h.get("router-event-id", ""), h.get("router-error-code", "")))
        delivery_dead = [(headers_of(m).get("router-event-id", ""), headers_of(m).get("router-error-code", ""))
                         for m in readers[f"{delivery_topic}.dlq"].messages]
        problems = [
            *check_ledger(workload, ledger["records"], TENANT, name),
            *check_dead_letters(workload, ingest, dead),
            *check_delivery_dlq(delivery_dead),
            *check_ingest(workload, ingest),
        ]
        print(f"phase {phase_s:.0f}s, drain {drain_s:.0f}s; partner: {len(ledger['accepted'])} accepted, "
              f"{sum(ledger['duplicates'].values())} duplicate sends refused, requests {ledger['by_status']}; "
              f"ingest {len(ingest)} records, ingest DLQ {len(dead)}, delivery DLQ {len(delivery_dead)}; "
              f"sender retries {sum(s.retries for s in senders)}", flush=True)
        print("faults applied:\n  " + ("\n  ".join(runner.applied) or "(none)"), flush=True)
        report = failure_report(cfg, problems, supervisor, runner, senders, stuck, not_idle, tmp_path)
        assert not report, report


def wait_idle(readers: dict[str, TopicReader], offsets: dict[str, GroupOffsets], ingest_topic: str,
              delivery_topic: str, deadline_s: float) -> str:
    """Wait until both groups have committed every record of their topic, the same for 2 s in a
    row (the readers may lag the broker by a poll); return "" or what was still unfinished."""
    state: dict[str, Any] = {"last": None, "since": 0.0, "text": ""}

    def idle() -> bool:
        pairs = []
        for topic, group in ((ingest_topic, "route"), (delivery_topic, "deliver")):
            reader = readers[topic]
            reader.poll()
            committed = offsets[group].committed(topic, reader.partitions)
            pairs.append((topic, group, tuple(sorted(committed.items())), tuple(sorted(reader.ends.items()))))
        readers[f"{ingest_topic}.dlq"].poll()
        state["text"] = "; ".join(f"{g} group committed {sum(o for _p, o in c)} of {sum(o for _p, o in e)} "
                                  f"records of {t} (per partition {dict(c)} vs {dict(e)})" for t, g, c, e in pairs)
        done = all(c == e for _t, _g, c, e in pairs)
        now = time.monotonic()
        if not done or pairs != state["last"]:
            state["last"], state["since"] = (pairs if done else None), now
            return False
        return now - state["since"] >= 2.0

    try:
        wait_for(idle, deadline_s=deadline_s, interval_s=0.5, what="the pipeline to go idle")
    except AssertionError:
        return f"not idle after {deadline_s:.0f}s: {state['text']}"
    return ""


def failure_report(cfg: FaultConfig, problems: list[str], supervisor: Supervisor, runner: FaultRunner,
                   senders: list[WebhookSender], stuck: list[str], not_idle: str, tmp_path: Path) -> str:
    """Everything that went wrong, led by the seed; "" when the run kept every guarantee."""
    lines = [f"- {p}" for p in problems]
    lines += [f"- process exited on its own: {c.describe()}" for c in supervisor.crashes]
    lines += [f"- {e}" for s in senders for e in s.errors[:5]]
    lines += [f"- fault not applied: {e}" for e in runner.errors]
    if stuck:
        lines.append(f"- still running at the end of the fault phase: {', '.join(stuck)}")
    if not_idle:
        lines.append(f"- {not_idle}")
    if not lines:
        return ""
    return (f"{cfg.describe()} broke the pipeline's guarantees (replay: {cfg.describe()} "
            f".venv/bin/pytest tests/fault -p no:cacheprovider -s):\n" + "\n".join(lines)
            + "\nfaults applied:\n  " + ("\n  ".join(runner.applied) or "(none)") + f"\nlogs: {tmp_path / 'logs'}")

"""The faults: planned from the seed (pure), then applied on a timeline by one thread."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from support.services import wait_for
from tests.fault.processes import Service, Supervisor

KILLED_KINDS = ("gateway", "route", "deliver")
ALL_KINDS = (*KILLED_KINDS, "redis", "partner")
# Kills in one consumer group are this far apart: the restarted member must have started and
# joined before its peer goes (the embedded broker wedges a group whose members all vanish
# within seconds; with a 6 s session timeout a join takes about 3 s after the old member expires).
GROUP_GAP_S = 15.0
GATEWAY_GAP_S = 4.0
REDIS_FREEZE_S = 8.0
PARTNER_WINDOW_S = 5.0
FIRST_FAULT_S = 8.0


@dataclass(frozen=True)
class Fault:
    at_s: float
    action: str  # kill | redis-stop | redis-cont | partner-503 | partner-429 | partner-ok
    target: str = ""

    def describe(self) -> str:
        return f"t={self.at_s:5.1f}s {self.action}{' ' + self.target if self.target else ''}"


def kills_per_kind(kills: int, kinds: Sequence[str]) -> dict[str, int]:
    """``kills`` spread over the killed kinds that are enabled, as evenly as possible."""
    chosen = [k for k in KILLED_KINDS if k in kinds]
    if not chosen or kills <= 0:
        return {}
    return {k: kills // len(chosen) + (1 if i < kills % len(chosen) else 0) for i, k in enumerate(chosen)}


def phase_needed_s(kills: int, kinds: Sequence[str]) -> float:
    """The shortest fault phase that fits the kills with their gaps."""
    need = 0.0
    for kind, n in kills_per_kind(kills, kinds).items():
        gap = GATEWAY_GAP_S if kind == "gateway" else GROUP_GAP_S
        need = max(need, FIRST_FAULT_S + max(n - 1, 0) * gap + 5.0)
    return need


def _spaced(rng: random.Random, n: int, start: float, end: float, gap: float) -> list[float]:
    """``n`` random times in [start, end], at least ``gap`` apart."""
    slack = max(0.0, (end - start) - (n - 1) * gap)
    return [start + t + i * gap for i, t in enumerate(sorted(rng.uniform(0, slack) for _ in range(n)))]


def plan_faults(seed: int, duration_s: float, kills: int, kinds: Sequence[str],
                members: Mapping[str, Sequence[str]], load_s: float | None = None) -> list[Fault]:
    """The faults of one run, from the seed: kills of each kind spaced out over the phase, a
    partner 503 window, then one Redis freeze, then a partner 429 window — the windows while the
    load runs (``load_s``; a longer phase only makes room for many kills)."""
    rng = random.Random(seed ^ 0xFA17)
    plan: list[Fault] = []
    end = max(duration_s - 2.0, FIRST_FAULT_S)
    for kind, n in kills_per_kind(kills, kinds).items():
        gap = GATEWAY_GAP_S if kind == "gateway" else GROUP_GAP_S
        for at in _spaced(rng, n, FIRST_FAULT_S, end, gap):
            plan.append(Fault(at, "kill", rng.choice(list(members[kind]))))
    # The three windows do not overlap (on the default 60 s phase): a partner window while Redis
    # is frozen would see no request at all.
    span = min(duration_s, load_s) if load_s else duration_s
    if "partner" in kinds:
        at = rng.uniform(0.15, 0.3) * span
        plan += [Fault(at, "partner-503"), Fault(at + PARTNER_WINDOW_S, "partner-ok")]
    if "redis" in kinds:
        at = rng.uniform(0.4, 0.55) * span
        plan += [Fault(at, "redis-stop"), Fault(at + REDIS_FREEZE_S, "redis-cont")]
    if "partner" in kinds:
        at = rng.uniform(0.72, 0.85) * span
        plan += [Fault(at, "partner-429"), Fault(at + PARTNER_WINDOW_S, "partner-ok")]
    return sorted(plan, key=lambda f: f.at_s)


class FaultRunner:
    """Applies a plan on the clock. A kill waits (bounded) until every member of the victim's
    group runs and the group's previous kill is ``GROUP_GAP_S`` old, then SIGKILLs and restarts at once."""

    def __init__(self, plan: Sequence[Fault], services: Mapping[str, Service], groups: Mapping[str, Sequence[str]],
                 supervisor: Supervisor, redis_pid: int, set_partner_rule: Callable[[int | None], None]) -> None:
        self.plan = list(plan)
        self.services = services
        self.group_of = {member: kind for kind, names in groups.items() for member in names}
        self.groups = groups
        self.supervisor = supervisor
        self.redis_pid = redis_pid
        self.set_partner_rule = set_partner_rule
        self.last_kill: dict[str, float] = {}
        self.applied: list[str] = []
        self.errors: list[str] = []
        self.redis_stopped = False

    def run(self, t0: float, stop: threading.Event) -> None:
        for fault in self.plan:
            if stop.wait(max(0.0, t0 + fault.at_s - time.monotonic())):
                return
            try:
                note = self._apply(fault, stop)
            except Exception as exc:
                self.errors.append(f"{fault.describe()}: {exc}")
                continue
            self.applied.append(f"t={time.monotonic() - t0:5.1f}s {note}")

    def _apply(self, fault: Fault, stop: threading.Event) -> str:
        if fault.action == "kill":
            return self._kill(fault.target, stop)
        if fault.action == "redis-stop":
            os.kill(self.redis_pid, signal.SIGSTOP)
            self.redis_stopped = True
            return f"redis SIGSTOP (pid {self.redis_pid})"
        if fault.action == "redis-cont":
            self.resume_redis()
            return "redis SIGCONT"
        status = {"partner-503": 503, "partner-429": 429, "partner-ok": None}[fault.action]
        self.set_partner_rule(status)
        return f"partner answers {status} to every record" if status else "partner healthy again"

    def _kill(self, target: str, stop: threading.Event) -> str:
        kind = self.group_of[target]
        gap = GATEWAY_GAP_S if kind == "gateway" else GROUP_GAP_S
        members = [self.services[m] for m in self.groups[kind]]
        since = self.last_kill.get(kind, -1e9)
        wait_for(lambda: stop.is_set() or (all(m.ready() for m in members) and time.monotonic() - since >= gap),
                 deadline_s=90, what=f"every {kind} process up before killing {target}", interval_s=0.1)
        if stop.is_set():
            return f"(stopped before killing {target})"
        pid = self.supervisor.kill_and_restart(self.services[target])
        self.last_kill[kind] = time.monotonic()
        return f"SIGKILL {target} (pid {pid}), restarted"

    def resume_redis(self) -> None:
        if self.redis_stopped:
            os.kill(self.redis_pid, signal.SIGCONT)
            self.redis_stopped = False

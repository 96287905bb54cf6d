"""Redis CPU per claim of the route worker's decision script, without Kafka: the figure a change to
``consumers/route/state_redis.py`` DECIDE has to move.

    python -m bench.decide_bench                 # 100,000 bench events, 3 rounds: ~1 min
    python -m bench.decide_bench --events 50000 --rounds 5

It starts its own redis-server (nothing else runs on it, so ``INFO cpu`` is the script's cost),
turns the route bench's workload (``bench.workload``) into claims with the shipped Zendesk spec
(``prepare`` + ``claim_for``, as the worker does), and decides them in batches of 2000 with
``RedisState``. Each round starts from an empty Redis, then decides every claim a second time (a
redelivery) and requires the same answers. Redis CPU per claim is steadier than wall time on a
shared machine: compare variants interleaved, in one sitting.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import redis
from confluent_kafka import Message

from bench.workload import generate
from consumers.route.state_redis import RedisState
from consumers.route.worker import to_inbound
from router.pipeline.records import Claim, Decision
from router.pipeline.stages import RoutingTable, claim_for, prepare
from router.spec.load import load_catalog
from tools.dev.embedded.redis import start_redis

ROOT = Path(__file__).resolve().parents[1]
SPEC = "zendesk-escalations-to-pagerduty"
BATCH = 2000


def bench_claims(events: int) -> list[Claim]:
    """The claims ``router route`` would send for the bench workload (4 partitions)."""
    catalog = load_catalog(ROOT / "integrations", ROOT / "schemas" / "avro")
    table = RoutingTable.build(tuple(i for i in catalog.integrations if i.name == SPEC), {SPEC: 1}, "bench:")
    topic = next(iter(table.by_topic))
    claims: list[Claim] = []
    for n, (key, value, headers) in enumerate(generate(events).records):
        inbound = to_inbound(Message(topic=topic, partition=n % 4, offset=n, key=key, value=value,
                                     headers=list(headers), timestamp=(1, 1_700_000_000_000)))
        prepared = prepare(inbound, table, None, 0)
        claims += [claim_for(c, inbound.coords, "bench:") for c in prepared.candidates]
    return claims


def decide_all(state: RedisState, claims: list[Claim]) -> list[Decision]:
    out: list[Decision] = []
    for start in range(0, len(claims), BATCH):
        out += state.decide(claims[start:start + BATCH])
    return out


def redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    claims = bench_claims(args.events)
    server, url = start_redis()
    try:
        client = redis.Redis.from_url(url)
        state = RedisState(client)
        for n in range(args.rounds):
            client.flushall()
            cpu0, wall0, own0 = redis_cpu_s(client), time.perf_counter(), time.process_time()
            first = decide_all(state, claims)
            cpu1, wall1, own1 = redis_cpu_s(client), time.perf_counter(), time.process_time()
            ok = decide_all(state, claims) == first
            counts = {d.name.lower(): first.count(d) for d in Decision}
            per = 1e6 / len(claims)
            print(f"round {n + 1}: {len(claims):,} claims {counts}; redis {(cpu1 - cpu0) * per:.2f} µs/claim, "
                  f"client {(own1 - own0) * per:.2f} µs/claim, wall {(wall1 - wall0) * per:.2f} µs/claim; "
                  f"redelivery gives the same answers: {ok}", flush=True)
            if not ok:
                return 1
        client.close()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The compiled Avro writer against fastavro on the route worker's output records. From the repository root:

    .venv/bin/python -m bench.avro_writer_bench [--records N] [--repeat R] [--seed S]

Encodes N Incident-shaped records (com.example.pagerduty.Incident, as the zendesk-escalations
mapping makes them: every field but ``source``, which takes its default) and N AccountUpdate
records (decimal, enum, boolean, optional string) two ways, each framed the way the route worker
frames a Kafka value (magic byte 0 and the 4-byte big-endian schema id):

* fastavro: ``BytesIO``, the header, ``schemaless_writer``, ``getvalue()``;
* compiled: ``header + write(record)`` with ``router.spec.avro_writer.compile_writer``.

Both outputs are checked equal, record by record, before timing. Each way is timed R times,
alternating, and the best run counts (the least disturbed by other load). No services needed.
The last line is machine-readable and describes Incident:

    RESULT fastavro_us=<x> compiled_us=<y> speedup=<r>
"""

from __future__ import annotations

import argparse
import decimal
import io
import random
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import orjson

from router.spec.avro_writer import compile_writer

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas" / "avro"
SCHEMA_ID = 7
HEADER = b"\x00" + struct.pack(">I", SCHEMA_ID)
TARGET = 3.0

TENANTS = ("acme", "globex", "initech", "umbrella")
TAGS = ("checkout", "billing", "login", "api", "mobile", "p1", "p2", "eu", "us", "vip", "sla")
WORDS = (
    "customer",
    "reports",
    "checkout",
    "page",
    "fails",
    "with",
    "error",
    "after",
    "payment",
    "several",
    "users",
    "in",
    "region",
    "cannot",
    "log",
    "retry",
    "escalating",
    "urgently",
)


def incidents(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """Records as the mapping emits them: ``source`` absent, ``requester_email`` sometimes None."""
    out = []
    for _ in range(n):
        tenant, ticket = rng.choice(TENANTS), rng.randrange(100_000, 1_000_000)
        title = " ".join(rng.choices(WORDS, k=7))[:50].capitalize()
        out.append(
            {
                "incident_key": f"{tenant}:{ticket}",
                "title": title,
                "severity": rng.randint(1, 3),
                "occurred_at": 1_760_000_000_000 + rng.randrange(0, 10_000_000_000),
                "requester_email": None if rng.random() < 0.1 else f"user{rng.randrange(10_000)}@{tenant}.example",
                "ticket_url": f"https://{tenant}.zendesk.example/agent/tickets/{ticket}",
                "tags": rng.sample(TAGS, rng.randint(0, 3)),
            }
        )
    return out


def account_updates(n: int, rng: random.Random) -> list[dict[str, Any]]:
    stages = ("prospect", "trial", "customer", "at_risk", "churned")
    return [
        {
            "account_id": f"cus_{rng.randrange(10**8):08d}",
            "subscription_id": f"sub_{rng.randrange(10**10):010d}",
            "mrr": decimal.Decimal(rng.randrange(0, 10_000_000)).scaleb(-2),
            "currency": rng.choice(("usd", "eur", "gbp")),
            "lifecycle_stage": rng.choice(stages),
            "billing_status": rng.choice(("active", "past_due", "canceled", "trialing")),
            "plan_name": rng.choice((None, "starter", "growth", "enterprise")),
            "cancel_at_period_end": rng.random() < 0.2,
            "status_changed_at": 1_760_000_000_000 + rng.randrange(0, 10_000_000_000),
        }
        for _ in range(n)
    ]


def fastavro_encoder(parsed: Any) -> Callable[[Any], bytes]:
    writer = fastavro.schemaless_writer

    def encode(record: Any) -> bytes:
        out = io.BytesIO()
        out.write(HEADER)
        writer(out, parsed, record)
        return out.getvalue()

    return encode


def compiled_encoder(schema: Any) -> Callable[[Any], bytes]:
    write = compile_writer(schema)

    def encode(record: Any) -> bytes:
        return HEADER + write(record)

    return encode


def best_us(encoders: dict[str, Callable[[Any], bytes]], records: list[Any], repeat: int) -> dict[str, float]:
    """Best µs/record per encoder over ``repeat`` alternating runs."""
    best = dict.fromkeys(encoders, float("inf"))
    for _ in range(repeat):
        for name, encode in encoders.items():
            start = time.perf_counter()
            for record in records:
                encode(record)
            best[name] = min(best[name], (time.perf_counter() - start) / len(records) * 1e6)
    return best


def measure(label: str, schema_file: str, records: list[Any], repeat: int) -> tuple[float, float]:
    schema = orjson.loads((SCHEMAS / schema_file).read_bytes())
    encoders = {"fastavro": fastavro_encoder(fastavro.parse_schema(schema)), "compiled": compiled_encoder(schema)}
    mismatches = sum(encoders["fastavro"](r) != encoders["compiled"](r) for r in records)
    if mismatches:
        print(f"{label}: {mismatches} of {len(records)} records encode differently", file=sys.stderr)
        raise SystemExit(1)
    us = best_us(encoders, records, repeat)
    size = sum(len(encoders["compiled"](r)) for r in records) / len(records)
    speedup = us["fastavro"] / us["compiled"]
    print(
        f"{label:>14}: {len(records):,} records, {size:.0f} B each, outputs equal | "
        f"fastavro {us['fastavro']:.2f} µs/record | compiled {us['compiled']:.2f} µs/record | {speedup:.2f}x"
    )
    return us["fastavro"], us["compiled"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="records per schema (default 100000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per encoder; the best counts (default 3)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    account_fa, account_c = measure(
        "AccountUpdate", "com.example.crm.AccountUpdate.avsc", account_updates(args.records, rng), args.repeat
    )
    print(
        f"account_update fastavro_us={account_fa:.3f} compiled_us={account_c:.3f} speedup={account_fa / account_c:.2f}"
    )
    fa, compiled = measure("Incident", "com.example.pagerduty.Incident.avsc", incidents(args.records, rng), args.repeat)
    speedup = fa / compiled
    print(f"target: speedup >= {TARGET:g} on Incident: {'met' if speedup >= TARGET else 'NOT met'}")
    print(f"RESULT fastavro_us={fa:.3f} compiled_us={compiled:.3f} speedup={speedup:.2f}")


if __name__ == "__main__":
    main()

"""How fast a registry-framed Avro value decodes, by fastavro entry point. Run from the repository root:

    .venv/bin/python -m bench.codec_bench [--records N] [--repeat R]

For each schema of schemas/avro/ with a sample record, and for each way of calling fastavro (the
public ``schemaless_reader`` with the body sliced off, with ``return_record_name`` off, on a
BytesIO positioned past the header; ``router.codec.decode``; fastavro's compiled ``_read_data``
below it with the named types and options made once), the best of R timings of N decodes,
in µs per record. The last line is machine-readable: ``RESULT schemaless_us=… codec_us=… speedup=…``
(Incident records).
"""

from __future__ import annotations

import argparse
import io
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import orjson

from router import codec

ROOT = Path(__file__).resolve().parents[1]
SAMPLES: dict[str, dict[str, Any]] = {
    "com.example.pagerduty.Incident": {
        "incident_key": "acme:48213", "title": "Checkout down #48213", "severity": 2,
        "occurred_at": datetime(2026, 11, 20, 10, 15, tzinfo=UTC), "source": "zendesk", "requester_email": None,
        "ticket_url": "https://acme.zendesk.com/agent/tickets/48213", "tags": ["checkout", "p1"]},
}


def compiled(value: bytes, parsed: Any) -> Callable[[], Any]:
    """fastavro's compiled reader below ``schemaless_reader``, its per-call set-up done once."""
    from fastavro._read import _default_named_schemas, _read_data  # type: ignore[attr-defined]

    named = _default_named_schemas()
    fastavro.parse_schema(parsed, named["writer"])
    options = {"return_record_name": False, "return_record_name_override": False, "handle_unicode_errors": "strict",
               "return_named_type": False, "return_named_type_override": False}

    def call() -> Any:
        body = io.BytesIO(value)
        body.seek(5)
        return _read_data(body, parsed, named, None, options)

    return call


def ways(value: bytes, parsed: Any, codec_schemas: codec.Codec) -> dict[str, Callable[[], Any]]:
    """Each way of decoding ``value``, as a no-argument call."""

    def positioned() -> Any:
        body = io.BytesIO(value)
        body.seek(5)
        return fastavro.schemaless_reader(body, parsed, None)

    return {
        "schemaless_reader(BytesIO(v[5:]))": lambda: fastavro.schemaless_reader(io.BytesIO(value[5:]), parsed, None),
        "schemaless_reader, return_record_name=False": lambda: fastavro.schemaless_reader(
            io.BytesIO(value[5:]), parsed, None, return_record_name=False),
        "schemaless_reader, BytesIO(v).seek(5)": positioned,
        "router.codec.decode": lambda: codec_schemas.decode(value),
        "_read_data, named types and options made once": compiled(value, parsed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.codec_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000, help="decodes per timing (default 20000)")
    parser.add_argument("--repeat", type=int, default=15,
                        help="timings per way, interleaved; the best is kept (default 15)")
    args = parser.parse_args(argv)
    result: dict[str, float] = {}
    for name, record in SAMPLES.items():
        parsed = fastavro.parse_schema(orjson.loads((ROOT / "schemas" / "avro" / f"{name}.avsc").read_bytes()))
        value = codec.encode(record, 7, codec.writer_of(parsed))
        held = codec.Codec()
        held.add(7, parsed)
        expected = fastavro.schemaless_reader(io.BytesIO(value[5:]), parsed, None)
        print(name)
        calls = ways(value, parsed, held)
        for label, call in calls.items():
            if call() != expected:
                raise SystemExit(f"{label} decodes differently")
        best: dict[str, float] = {}
        for _ in range(args.repeat):  # interleaved, so a busy moment of a shared machine hits every way
            for label, call in calls.items():
                took = timeit.timeit(call, number=args.records) / args.records * 1e6
                best[label] = min(best.get(label, took), took)
        for label, us in best.items():
            result.setdefault(label, us)
            print(f"  {us:6.2f} µs  {label}")
    base, ours = result["schemaless_reader(BytesIO(v[5:]))"], result["router.codec.decode"]
    print(f"RESULT schemaless_us={base:.3f} codec_us={ours:.3f} speedup={base / ours:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

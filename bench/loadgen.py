"""A small HTTP/1.1 load generator in its own process: closed loop (max rate) or open loop (paced).

    python -m bench.loadgen --url http://127.0.0.1:P (--path /v1/hooks/acme/bench | --requests FILE) \\
        (--connections C | --rate R) --duration S [--warmup S]

Requests are Zendesk-like events signed with Standard Webhooks (secret from the environment
variable BENCH_WEBHOOK_SECRET, ``whsec_<base64>``), signed at start so their timestamps are
fresh; or, with ``--requests FILE``, raw requests signed beforehand (``write_requests``: the
tenant mode of bench.gateway_bench, one signing secret per tenant). It speaks raw HTTP/1.1
keep-alive over asyncio streams (far cheaper per request than a full client, so more of the two
cores is left to the server).

- closed loop (``--connections C``): C connections, each sends its next request as soon as
  the previous answer arrived; the rate is the server's maximum at that concurrency.
- open loop (``--rate R``): requests are due at fixed intervals whatever the server does; a
  latency is measured from when the request was *due*, not when it was sent, so a stalled
  server cannot hide its queueing (no coordinated omission). Up to 256 connections.

Prints one JSON line: requests, rps, p50_ms, p99_ms, max_ms, statuses, errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from router.spec.sources import decode_standard_webhooks_secret
from support.signing import sign_standard_webhooks

OPEN_LOOP_CONNECTIONS = 256


def signed_request(host: str, path: str, key: bytes, now: int, i: int) -> bytes:
    """Request ``i`` as raw bytes: a Zendesk-like event POSTed to ``path``, signed (Standard Webhooks) with ``key``."""
    body = orjson.dumps({
        "event_id": f"evt-{now}-{i}", "type": "ticket.escalated", "sequence": i,
        "occurred_at": "2026-11-20T10:15:00Z",
        "data": {"ticket": {"id": 10_000 + i % 500, "title": f"Checkout is down for EU customers #{i}",
                            "priority": "high", "requester": {"email": "ana@example.com"},
                            "tags": ["checkout", "p1"]}},
    })
    msg_id = f"msg_{now}_{i}"
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nwebhook-id: {msg_id}\r\nwebhook-timestamp: {now}\r\n"
            f"webhook-signature: {sign_standard_webhooks(key, msg_id, now, body)}\r\n\r\n")
    return head.encode() + body


def build_requests(host: str, path: str, secret: str, n: int = 2000) -> list[bytes]:
    """``n`` distinct, signed POSTs as raw bytes (distinct ids, tickets and titles)."""
    key = decode_standard_webhooks_secret(secret)
    now = int(time.time())
    return [signed_request(host, path, key, now, i) for i in range(n)]


def write_requests(requests: list[bytes], path: Path) -> None:
    """Save raw requests for ``--requests`` (each prefixed with its length, 4 bytes big-endian)."""
    path.write_bytes(b"".join(struct.pack(">I", len(r)) + r for r in requests))


def read_requests(path: Path) -> list[bytes]:
    """The raw requests :func:`write_requests` saved."""
    data, out, at = path.read_bytes(), [], 0
    while at < len(data):
        (size,) = struct.unpack_from(">I", data, at)
        out.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return out


@dataclass
class Results:
    warm_until: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0

    def record(self, due: float, status: int) -> None:
        if due >= self.warm_until:
            self.latencies.append(time.perf_counter() - due)
            self.statuses[status] += 1


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def roundtrip(self, payload: bytes) -> int:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.writer.write(payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lower = head.lower()
        at = lower.find(b"content-length:")
        if at >= 0:
            await self.reader.readexactly(int(lower[at + 15 : lower.index(b"\r\n", at)]))
        if b"connection: close" in lower:
            self.writer.close()
            self.reader = self.writer = None
        return int(head[9:12])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def send(conn: Connection, request: bytes, results: Results) -> tuple[Connection, int | None]:
    """One request on ``conn``: (conn, status), or on a broken connection an error counted and
    (a fresh connection to the same address, None)."""
    try:
        return conn, await conn.roundtrip(request)
    except (OSError, asyncio.IncompleteReadError, ValueError):
        results.errors += 1
        conn.close()
        return Connection(conn.host, conn.port), None


async def closed_loop(host: str, port: int, requests: list[bytes], connections: int, end: float,
                      results: Results) -> None:
    async def worker(offset: int) -> None:
        conn = Connection(host, port)
        i = offset
        try:
            while time.perf_counter() < end:
                started = time.perf_counter()
                conn, status = await send(conn, requests[i % len(requests)], results)
                if status is None:
                    continue
                results.record(started, status)
                i += connections
        finally:
            conn.close()

    await asyncio.gather(*(worker(n) for n in range(connections)))


async def open_loop(host: str, port: int, requests: list[bytes], rate: float, start: float, end: float,
                    results: Results) -> None:
    due_times: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()

    async def worker() -> None:
        conn = Connection(host, port)
        try:
            while (item := await due_times.get()) is not None:
                i, due = item
                conn, status = await send(conn, requests[i % len(requests)], results)
                if status is None:
                    continue
                results.record(due, status)
        finally:
            conn.close()

    workers = [asyncio.create_task(worker()) for _ in range(OPEN_LOOP_CONNECTIONS)]
    sent = 0
    while (now := time.perf_counter()) < end:
        due_count = int((now - start) * rate)
        while sent < due_count:
            due_times.put_nowait((sent, start + sent / rate))
            sent += 1
        await asyncio.sleep(0.0005)
    for _ in workers:
        due_times.put_nowait(None)
    await asyncio.gather(*workers)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def run(args: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    requests = read_requests(Path(args.requests)) if args.requests else \
        build_requests(f"{host}:{port}", args.path, os.environ["BENCH_WEBHOOK_SECRET"])
    start = time.perf_counter()
    results = Results(warm_until=start + args.warmup)
    end = start + args.warmup + args.duration
    if args.rate:
        await open_loop(host, port, requests, args.rate, start, end, results)
    else:
        await closed_loop(host, port, requests, args.connections, end, results)
    latencies = sorted(results.latencies)
    return {"mode": "open" if args.rate else "closed", "target_rps": args.rate, "connections": args.connections,
            "requests": len(latencies), "rps": round(len(latencies) / args.duration, 1),
            "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
            "max_ms": round((latencies[-1] if latencies else 0) * 1000, 2),
            "statuses": {str(k): v for k, v in sorted(results.statuses.items())}, "errors": results.errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--path", default="", help="where to POST (with BENCH_WEBHOOK_SECRET), unless --requests")
    parser.add_argument("--requests", default="", help="a file of pre-signed raw requests (write_requests) to cycle")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop at this many requests/s")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args()
    sys.stdout.write(orjson.dumps(asyncio.run(run(args))).decode() + "\n")


if __name__ == "__main__":
    main()

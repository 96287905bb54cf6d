"""The baseline of bench.deliver_bench: the least an HTTP client does to post the same batches.

    python -m bench.deliver_client --url URL --requests FILE [--concurrency 8]

FILE holds one request per line: its Idempotency-Key, a tab, its JSON body, built beforehand with
consumers.deliver.payload, so byte for byte what the delivery worker sends for the same batch.
The client keeps ``--concurrency`` requests in flight on one keep-alive aiohttp session (the
worker's default is 8 per integration) and reads every answer. It reads no Kafka, decodes
nothing and writes nothing to Redis: it is the ceiling for one process posting these requests.
It prints ``done requests=<n> failed=<n> seconds=<s>`` and exits 0 when every answer was a 200.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp


async def post_all(url: str, requests: list[tuple[str, bytes]], concurrency: int) -> int:
    """POST every request, ``concurrency`` at a time; return how many were not answered 200."""
    failed = 0
    pending: Iterator[tuple[str, bytes]] = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=30)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one_connection() -> None:
            nonlocal failed
            for key, body in pending:  # the iterator is shared: each request is taken once
                headers = {"Content-Type": "application/json", "Idempotency-Key": key}
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    failed += resp.status != 200

        await asyncio.gather(*(one_connection() for _ in range(concurrency)))
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.deliver_client", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="where to POST, e.g. http://127.0.0.1:PORT/v1/DESTINATION")
    parser.add_argument("--requests", required=True, type=Path, help="file: one 'key<TAB>body' line per request")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    args = parser.parse_args(argv)
    requests = []
    for line in args.requests.read_bytes().splitlines():
        key, _, body = line.partition(b"\t")
        requests.append((key.decode(), body))
    started = time.monotonic()
    failed = asyncio.run(post_all(args.url, requests, max(1, args.concurrency)))
    print(f"done requests={len(requests)} failed={failed} seconds={time.monotonic() - started:.3f}", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

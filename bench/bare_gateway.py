"""The ceiling for the gateway benchmark: a bare aiohttp handler that reads the body and answers 202.

Same route, same server settings (AppRunner, no access log) as ``router gateway``; no
verification, no JSON, no Kafka. Run as its own process:

    python -m bench.bare_gateway --port P [--reuse-port]

It prints ``READY bare=http://127.0.0.1:P`` once listening and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import orjson
from aiohttp import web


async def accept(request: web.Request) -> web.Response:
    """Read the body, answer 202 with a body shaped like the gateway's."""
    await request.read()
    return web.Response(status=202, content_type="application/json",
                        body=orjson.dumps({"event_id": "-", "topic": "-", "partition": 0, "offset": 0}))


async def serve(host: str, port: int, reuse_port: bool) -> None:
    app = web.Application()
    app.router.add_post("/v1/hooks/{tenant}/{source}", accept)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=1024).start()
    print(f"READY bare=http://{host}:{runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reuse-port", action="store_true")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.reuse_port))


if __name__ == "__main__":
    main()

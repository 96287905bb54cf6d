"""Delivered keys: which records a partner has accepted, so a re-routed record is not sent twice.

One Redis key per record, ``<prefix>delivered:<destination>:<idempotency key>``, written after the
partner accepted it (with a TTL of at least a week) and read before a request (``MGET``). A batch's
keys are written by one call of a small Lua script, not one ``SET … EX`` per record: measured on
the 2-core VM, a pipeline of 50 SETs cost 27 µs of client CPU per key (redis-py packs and parses
each command), the script 4.5-5 µs.

Redis Cluster: a script may only touch keys of one hash slot, and the keys of a batch are spread
over many slots (nearly one slot per key). On a cluster client, reads are ``MGET``s split by slot
and sent as one pipeline per node (``redisconn.mget_async``), and writes are ``SET … EX`` commands
pipelined the same way: a script per slot would cost one call per key. A standalone server keeps
the one ``MGET`` and the one script call per batch. The key names carry no hash tag on purpose: a
tag per destination would put a week of a destination's keys on one shard, and renaming the keys
would forget, at deploy, what was delivered before.

Calls are combined: while one read (or one write of a TTL) is in flight, the calls that come
queue, and go together as the next one. At batch 1 each request otherwise made two Redis round
trips of its own, and the socket writes to Redis were the worker's largest cost (19% of its
samples). A caller still waits for its own keys' answer, so what it does next (send, finish) is
ordered after Redis answered, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from router import redisconn

# KEYS: delivered keys (a standalone server: no slots). ARGV: TTL in seconds.
REMEMBER = """
for i = 1, #KEYS do
  redis.call("SET", KEYS[i], "1", "EX", ARGV[1])
end
return #KEYS
"""


def delivered_key(prefix: str, destination: str, idempotency_key: str) -> str:
    """The key that says the record with ``idempotency_key`` was accepted by ``destination``."""
    return f"{prefix}delivered:{destination}:{idempotency_key}"


class _Combined:
    """Calls of one Redis operation over keys, combined: those made while one is in flight go
    together as the next (one call, in order); each caller gets the results of its own keys."""

    def __init__(self, run: Callable[[list[str]], Awaitable[list[Any]]]) -> None:
        """``run`` answers a list of keys with one result per key."""
        self._run = run
        self._queue: list[tuple[list[str], asyncio.Future[list[Any]]]] = []
        self._drain: asyncio.Task[None] | None = None

    async def __call__(self, keys: list[str]) -> list[Any]:
        """The results for ``keys``, from the next combined call."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append((keys, future))
        if self._drain is None:
            self._drain = asyncio.create_task(self._drain_queue())
        return await future

    async def _drain_queue(self) -> None:
        """Run the queued calls, as one call each time, until none is left; fail them with its error."""
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    results = await self._run([key for keys, _ in batch for key in keys])
                except BaseException as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                start = 0
                for keys, future in batch:
                    if not future.done():  # its caller may have been cancelled meanwhile
                        future.set_result(results[start:start + len(keys)])
                    start += len(keys)
        finally:
            self._drain = None
            if self._queue:  # only when cancelled: no call is left waiting forever
                batch, self._queue = self._queue, []
                for _, future in batch:
                    if not future.done():
                        future.set_exception(ConnectionError("delivered keys: the combined call was cancelled"))


class DeliveredKeys:
    """Read and write delivered keys: one Redis call (one pipeline per node on a cluster) for every
    batch of combined calls."""

    def __init__(self, client: redisconn.Async, prefix: str) -> None:
        """Keys under ``prefix`` on ``client`` (standalone, or a cluster client)."""
        self.client = client
        self.prefix = prefix
        self.clustered = redisconn.clustered(client)
        self._remember = client.register_script(REMEMBER)
        self._seen = _Combined(self._seen_now)
        self._writes: dict[int, _Combined] = {}  # by TTL: one script call sets one TTL

    def keys(self, destination: str, idempotency_keys: list[str]) -> list[str]:
        """The delivered keys of these records."""
        return [delivered_key(self.prefix, destination, k) for k in idempotency_keys]

    async def seen(self, keys: list[str]) -> list[bool]:
        """For each key, whether the record was delivered already."""
        if not keys:
            return []
        return await self._seen(keys)

    async def remember(self, keys: list[str], ttl_s: int) -> None:
        """Write ``keys`` with a TTL of ``ttl_s`` seconds."""
        if not keys:
            return
        write = self._writes.get(ttl_s)
        if write is None:
            write = self._writes[ttl_s] = _Combined(lambda keys: self._remember_now(keys, ttl_s))
        await write(keys)

    async def _seen_now(self, keys: list[str]) -> list[bool]:
        """One ``MGET`` (split by slot, one pipeline per node, on a cluster)."""
        return [value is not None for value in await redisconn.mget_async(self.client, keys)]

    async def _remember_now(self, keys: list[str], ttl_s: int) -> list[None]:
        """One script call; on a cluster, one pipeline of ``SET … EX`` per node."""
        if not self.clustered:
            await self._remember(keys=keys, args=[ttl_s])
            return [None] * len(keys)
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(key, "1", ex=ttl_s)
            await pipe.execute()
        return [None] * len(keys)

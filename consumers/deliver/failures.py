"""What the delivery worker retries rather than dead-letters: failures that pass by themselves."""

from __future__ import annotations

import asyncio

import aiohttp

from consumers.deliver.auth import AuthFailed, TokenUnavailable
from router import redisconn
from router.progress import OTHER, REDIS

# Redis being down or frozen: wait and try again, never exit (DESIGN §4: only slow a batch). A cluster
# client with no node to ask raises RedisClusterException, which is not a RedisError: in ERRORS too.
RETRYABLE_REDIS = (*redisconn.UNAVAILABLE, TimeoutError)
# What may fail a request before the partner answers and passes by itself: retried, not dead-lettered.
TRANSIENT = (*RETRYABLE_REDIS, aiohttp.ClientError, TokenUnavailable, AuthFailed, ConnectionError,
             asyncio.TimeoutError)

# The partner's side (its token endpoint): the integration's health, not the worker's.
PARTNER = (aiohttp.ClientError, TokenUnavailable, AuthFailed)

# The parts of a delivery worker's work whose failure runs ``router.progress`` tracks.
REQUESTS, DEAD_LETTERS, STATES = "requests", "dead_letters", "states"


def worker_reason(exc: BaseException) -> str | None:
    """The ``router_batches_failed`` reason of a TRANSIENT failure, or None when the partner's side
    failed (a restart would not help; the integration's health shows it). What reaches the request
    path outside the partner's calls and is not a RedisError is still Redis's (the delivered-keys
    call raises ConnectionError when its combined call is cancelled); anything else is ``other``."""
    if isinstance(exc, PARTNER):
        return None
    if isinstance(exc, (*redisconn.ERRORS, ConnectionError)):
        return REDIS
    return OTHER

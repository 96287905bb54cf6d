"""What the delivery worker retries rather than dead-letters: failures that pass by themselves."""

from __future__ import annotations

import asyncio

import aiohttp

from consumers.deliver.auth import AuthFailed, TokenUnavailable
from router import redisconn

# Redis being down or frozen: wait and try again, never exit (DESIGN §4: only slow a batch). A cluster
# client with no node to ask raises RedisClusterException, which is not a RedisError: in ERRORS too.
RETRYABLE_REDIS = (*redisconn.UNAVAILABLE, TimeoutError)
# What may fail a request before the partner answers and passes by itself: retried, not dead-lettered.
TRANSIENT = (*RETRYABLE_REDIS, aiohttp.ClientError, TokenUnavailable, AuthFailed, ConnectionError,
             asyncio.TimeoutError)

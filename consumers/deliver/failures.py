"""What the delivery worker retries rather than dead-letters: failures that pass by themselves."""

from __future__ import annotations

import asyncio

import aiohttp
import redis

from consumers.deliver.auth import AuthFailed, TokenUnavailable

# Redis being down or frozen: wait and try again, never exit (DESIGN §4: only slow a batch).
RETRYABLE_REDIS = (redis.RedisError, OSError, TimeoutError)
# What may fail a request before the partner answers and passes by itself: retried, not dead-lettered.
TRANSIENT = (*RETRYABLE_REDIS, aiohttp.ClientError, TokenUnavailable, AuthFailed, ConnectionError,
             asyncio.TimeoutError)

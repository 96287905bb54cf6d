"""Signing webhooks as a partner does, for the tests, the benchmarks and a developer's hand-made request.

The gateway only verifies (producers/webhooks/verify.py); these write the header values it checks,
computed here on their own so that a test of the verifier is not a test of itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _header_bytes(value: str) -> bytes:
    # The bytes a header string stands for, as the gateway reads them (aiohttp decodes with surrogateescape).
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def sign_standard_webhooks(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value (one ``v1,<base64>`` entry) for ``body``."""
    signed = _header_bytes(msg_id) + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(_hmac(key, signed)).decode()


def sign_stripe(key: bytes, timestamp: int, body: bytes) -> str:
    """The ``Stripe-Signature`` value for ``body``."""
    return f"t={timestamp},v1={_hmac(key, str(timestamp).encode() + b'.' + body).hex()}"


def sign_github(key: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value for ``body``."""
    return "sha256=" + _hmac(key, body).hex()

#!/usr/bin/env python3
"""Write deploy/.env for docker-compose.yml with fresh random secrets (Python's stdlib only).

    python3 deploy/new-env.py            # writes deploy/.env; refuses to overwrite one
    python3 deploy/new-env.py --force    # replaces it

It copies deploy/.env.example and replaces every secret placeholder the router refuses to run
with (the admin token, the webhook signing secrets) by a random value in the format the source
expects. Partner credentials are kept: they match the partner simulator compose runs; put the
real partners' values in deploy/.env when you point the *_URL variables at them.
"""

from __future__ import annotations

import base64
import secrets
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

FRESH = {
    "ROUTER_ADMIN_TOKEN": lambda: secrets.token_urlsafe(32),
    # Standard Webhooks: whsec_ followed by base64 of the key.
    "ZENDESK_WEBHOOK_SECRET": lambda: "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
    "STRIPE_WEBHOOK_SECRET": lambda: "whsec_" + secrets.token_hex(24),
    "GITHUB_WEBHOOK_SECRET": lambda: secrets.token_hex(32),
}


def render(example: str) -> str:
    """``example`` with every FRESH key's value replaced by a new random one."""
    lines = []
    for line in example.splitlines():
        key = line.split("=", 1)[0].strip()
        fresh = "=" in line and not line.lstrip().startswith("#") and key in FRESH
        lines.append(f"{key}={FRESH[key]()}" if fresh else line)
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    target = HERE / ".env"
    if target.exists() and "--force" not in argv:
        print(f"{target} exists; pass --force to replace it", file=sys.stderr)
        return 2
    target.write_text(render((HERE / ".env.example").read_text()))
    target.chmod(0o600)
    print(f"wrote {target} with fresh secrets (readable by you only); `docker compose up -d` reads it")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

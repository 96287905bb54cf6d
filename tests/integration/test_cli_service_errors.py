"""A command whose Redis or Kafka is down says so in one line with exit 2, never a traceback (issue 22)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from router.procs import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_redis_down_is_one_line_with_a_code() -> None:
    closed = free_port()  # nothing listens there
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{closed}/0", "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed}"}
    result = subprocess.run([sys.executable, "-m", "router", "integrations", "status"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("router: error [cli.unavailable]: Redis: "), lines[0]

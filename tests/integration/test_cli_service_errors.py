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


def test_broker_down_is_one_line_and_the_kafka_client_log_only_with_v() -> None:
    closed = free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed}"}
    quiet = subprocess.run([sys.executable, "-m", "router", "dlq", "ls"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=90, check=False)
    assert quiet.returncode == 2, quiet.stderr
    lines = quiet.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("router: error ["), quiet.stderr
    loud = subprocess.run([sys.executable, "-m", "router", "-v", "dlq", "ls"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=90, check=False)
    assert loud.returncode == 2
    assert "|FAIL|" in loud.stderr, "with -v the Kafka client says what it tried"
    assert loud.stderr.strip().splitlines()[-1] == lines[0]

"""`router dev` as a user runs it: READY line, topics and schemas in place, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from support.services import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _start(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, Path]:  # type: ignore[type-arg]
    out = tmp_path / "dev.out"
    clean = {k: v for k, v in os.environ.items()
             if k not in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL")}
    with open(out, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "router", "dev", "--log-dir", str(tmp_path / "logs"), *extra],
                                cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env={**clean, **(env or {})})
    return proc, out


def _ready(out: Path) -> dict[str, str] | None:
    """The READY line's fields, once ``router dev`` printed it."""
    for line in out.read_text().splitlines():
        if line.startswith("READY "):
            return dict(pair.split("=", 1) for pair in line.split()[1:])
    return None


def _free_base(count: int = 6) -> int:
    """A port N with N..N+count-1 free (a --port-base for router dev)."""
    import random

    from router.procs import port_is_free

    for _ in range(200):
        base = random.randrange(20_000, 40_000)
        if all(port_is_free(base + i) for i in range(count)):
            return base
    raise AssertionError("no free range of loopback ports")


def test_dev_starts_everything_and_stops_without_orphans(tmp_path: Path) -> None:
    sources = tmp_path / "my-sources"  # --sources: a partner's own folder (a copy of the shipped ones here)
    sources.mkdir()
    for spec in (ROOT / "sources").glob("*.yaml"):
        (sources / spec.name).write_text(spec.read_text())
    base = _free_base()
    proc, out = _start(tmp_path, "--port-base", str(base), "--sources", str(sources))
    try:
        ready: dict[str, str] = wait_for(
            lambda: _ready(out) or ({"exited": out.read_text()} if proc.poll() is not None else None),
                         deadline_s=120, what="router dev to print READY")
        assert "exited" not in ready, ready
        assert set(ready) >= {"kafka", "redis", "registry", "partner", "route", "deliver", "admin", "admin_token",
                              "gateway", "prefix", "env"}
        # --port-base reaches every child: Kafka N, registry N+1, admin N+3, gateway N+4, partner N+5.
        assert ready["kafka"].endswith(f":{base}") and ready["registry"].endswith(f":{base + 1}")
        assert (ready["admin"], ready["gateway"], ready["partner"]) == (
            f"http://127.0.0.1:{base + 3}", f"http://127.0.0.1:{base + 4}", f"http://127.0.0.1:{base + 5}")
        # CLI commands aimed at the stack find its key prefix in the env file: a pause really pauses.
        env_file = Path(ready["env"])
        dev_env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert dev_env["ROUTER_REDIS_KEY_PREFIX"] == ready["prefix"] and dev_env["REDIS_URL"] == ready["redis"]
        paused = subprocess.run([sys.executable, "-m", "router", "integrations", "pause",
                                 "zendesk-escalations-to-pagerduty"], cwd=ROOT, capture_output=True, text=True,
                                env={**os.environ, **dev_env}, timeout=60, check=False)
        assert paused.returncode == 0, paused.stderr
        import redis

        client = redis.Redis.from_url(ready["redis"])
        try:
            assert client.get(f"{ready['prefix']}integration:zendesk-escalations-to-pagerduty:state"), \
                "the pause was written where the dev workers look"
        finally:
            client.close()
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "router dev runs its services as child processes"
        topics = set(AdminClient({"bootstrap.servers": ready["kafka"]}).list_topics(timeout=10).topics)
        assert {"ingest.zendesk", "ingest.zendesk.dlq", "delivery.pagerduty", "delivery.pagerduty.dlq",
                "ingest.stripe", "delivery.crm", "cohort.vip-users", "delivery.braze"} <= topics
        with SchemaRegistryClient({"url": ready["registry"]}) as registry:
            subjects = set(registry.get_subjects())
        assert {"delivery.pagerduty-value", "delivery.crm-value", "delivery.braze-value",
                "cohort.vip-users-value"} <= subjects
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert not env_file.exists(), "the env file goes with the stack"
        wait_for(lambda: not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE],
                 deadline_s=30, what="every child of router dev to exit")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_dev_sigkilled_leaves_no_children(tmp_path: Path) -> None:
    proc, out = _start(tmp_path)
    try:
        wait_for(lambda: _ready(out) or proc.poll() is not None, deadline_s=120, what="READY")
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children
        proc.kill()
        proc.wait(10)
        wait_for(lambda: not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE],
                 deadline_s=30, what="the children to die with their parent")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_dev_reports_a_bad_spec_and_starts_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "specs"
    bad.mkdir()
    (bad / "x.yaml").write_text("name: x\nversion: 1\nsource: {topic: ingest.x}\n")
    proc, out = _start(tmp_path, "--integrations", str(bad))
    assert proc.wait(60) != 0
    text = out.read_text()
    assert "x.yaml:3: source: missing required key: 'event_id'" in text
    assert "Traceback" not in text
    assert not (tmp_path / "logs" / "kafka.log").exists(), "nothing was started"


def test_dev_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc, out = _start(tmp_path, "--port-base", str(port))
        assert proc.wait(60) != 0
    text = out.read_text()
    assert f"port {port}" in text and "in use" in text
    assert "Traceback" not in text


def test_a_child_that_dies_is_named_with_its_last_words_and_log(tmp_path: Path) -> None:
    proc, out = _start(tmp_path)
    try:
        ready = wait_for(lambda: _ready(out) or ({"exited": out.read_text()} if proc.poll() is not None else None),
                         deadline_s=120, what="router dev to print READY")
        assert "exited" not in ready, ready
        route = next(c for c in psutil.Process(proc.pid).children(recursive=True)
                     if c.cmdline()[1:4] == ["-m", "router", "route"])
        route.send_signal(signal.SIGKILL)
        assert proc.wait(60) != 0
        text = out.read_text()
        line = next(x for x in text.splitlines() if x.startswith("router: error"))
        assert "route exited with code -9" in line and f"its log: {tmp_path / 'logs' / 'route.log'}" in line, line
        assert "Traceback" not in text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

"""`router gateway` as a user runs it: one READY line, graceful SIGTERM, --workers, start-up errors."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from router.devsecrets import DEV_SECRETS
from support.routing import read_all
from support.services import wait_for
from tests.integration.gatewaying import ENV, Answer, request, std_headers, ticket_event, write_sources

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def gateway_process(tmp_path: Path, bootstrap: str, *args: str, env: dict[str, str] | None = None
                    ) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`python -m router gateway ...` with stdout in a file; always stopped (and reaped) at the end."""
    out = tmp_path / f"gateway-{len(list(tmp_path.glob('gateway-*.out')))}.out"
    full_env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, **ENV, **(env or {})}
    with open(out, "wb") as stdout:
        proc = subprocess.Popen([sys.executable, "-m", "router", "gateway", *args], cwd=ROOT, stdout=stdout,
                                stderr=subprocess.PIPE, env=full_env)
    try:
        yield proc, out
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        if proc.stderr:
            proc.stderr.close()


def ready_url(proc: subprocess.Popen[bytes], out: Path) -> str:
    wait_for(lambda: "READY" in out.read_text() or proc.poll() is not None, deadline_s=60,
             what="the gateway to print READY")
    lines = out.read_text().splitlines()
    assert proc.poll() is None, (lines, proc.stderr.read() if proc.stderr else b"")
    assert len(lines) == 1 and lines[0].startswith("READY gateway=http://127.0.0.1:"), lines
    return lines[0].split("=", 1)[1]


def test_ready_line_and_sigterm_finishes_in_flight_requests(kafka_bootstrap: str, tmp_path: Path, name: str) -> None:
    sources = write_sources(tmp_path / "sources", name)
    # A long linger makes every ack take ~1.5 s, so SIGTERM lands while the request is in flight.
    with gateway_process(tmp_path, kafka_bootstrap, "--port", "0", "--sources", str(sources),
                         env={"ROUTER_GATEWAY_LINGER_MS": "1500"}) as (proc, out):
        url = ready_url(proc, out)
        unsigned = request(url, "POST", f"/v1/hooks/acme/{name}", b"{}", {"Content-Type": "application/json"})
        assert unsigned.status == 401
        exposition = request(url, "GET", "/metrics").body.decode()
        assert re.search(r'router_gateway_requests_total\{[^}]*code="gateway.bad_signature"', exposition), exposition
        body = ticket_event("evt-in-flight")
        answers: list[Answer] = []
        sender = threading.Thread(target=lambda: answers.append(
            request(url, "POST", f"/v1/hooks/acme/{name}", body, std_headers(body))))
        sender.start()
        wait_for(lambda: _connections_to(proc.pid), deadline_s=10, what="the request to reach the gateway")
        proc.send_signal(signal.SIGTERM)
        sender.join(30)
        assert proc.wait(30) == 0
        assert [a.status for a in answers] == [202], [a.body for a in answers]
        assert out.read_text().splitlines()[-1] == "stopped gateway"
    [record] = read_all(kafka_bootstrap, f"ingest.{name}", expect=1, deadline_s=30)
    assert record.value() == body


def _connections_to(pid: int) -> bool:
    return any(c.status == psutil.CONN_ESTABLISHED for c in psutil.Process(pid).net_connections("tcp"))


def test_workers_share_one_port(kafka_bootstrap: str, tmp_path: Path, name: str) -> None:
    sources = write_sources(tmp_path / "sources", name)
    with gateway_process(tmp_path, kafka_bootstrap, "--port", "0", "--workers", "2", "--sources",
                         str(sources)) as (proc, out):
        url = ready_url(proc, out)
        children = psutil.Process(proc.pid).children()
        assert len(children) == 2
        port = int(url.rsplit(":", 1)[1])
        for child in children:
            assert any(c.laddr.port == port and c.status == psutil.CONN_LISTEN
                       for c in child.net_connections("tcp"))
        for i in range(6):
            body = ticket_event(f"evt-{i}")
            assert request(url, "POST", f"/v1/hooks/acme/{name}", body, std_headers(body)).status == 202
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert len(read_all(kafka_bootstrap, f"ingest.{name}", expect=6, deadline_s=30)) == 6


def test_start_up_errors_are_one_clear_line(kafka_bootstrap: str, tmp_path: Path, name: str) -> None:
    sources = write_sources(tmp_path / "sources", name)
    with gateway_process(tmp_path, kafka_bootstrap, "--port", "0", "--sources", str(sources),
                         env={"GW_TEST_SECRET": ""}) as (proc, out):
        assert proc.wait(60) == 2
        err = proc.stderr.read().decode() if proc.stderr else ""
        assert "GW_TEST_SECRET is not set" in err and f"{name}.yaml:3: signature.secrets[0]" in err, err
        assert "Traceback" not in err and out.read_text() == ""
    # The published development secrets are refused unless --dev-secrets says this is a dev machine.
    dev = {"GW_TEST_SECRET": DEV_SECRETS["ZENDESK_WEBHOOK_SECRET"]}
    with gateway_process(tmp_path, kafka_bootstrap, "--port", "0", "--sources", str(sources), env=dev) as (proc, _):
        assert proc.wait(60) == 2
        assert "published secret" in (proc.stderr.read().decode() if proc.stderr else "")
    with gateway_process(tmp_path, kafka_bootstrap, "--port", "0", "--sources", str(sources), "--dev-secrets",
                         env=dev) as (proc, out):
        ready_url(proc, out)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0

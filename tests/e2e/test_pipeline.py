"""The whole product as a user runs it: `router dev`, a signed webhook, the partner, the CLI."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from standardwebhooks.webhooks import Webhook

from router.devsecrets import DEV_SECRETS
from support.services import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:  # type: ignore[type-arg]
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _get(url: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(url, timeout=10) as resp:
        return dict(json.loads(resp.read()))


def _signed(event: dict, msg_id: str) -> tuple[bytes, dict[str, str]]:  # type: ignore[type-arg]
    body = json.dumps(event)
    now = datetime.datetime.now(tz=datetime.UTC)
    signature = Webhook(DEV_SECRETS["ZENDESK_WEBHOOK_SECRET"]).sign(msg_id, now, body)
    return body.encode(), {"Content-Type": "application/json", "webhook-id": msg_id,
                           "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}


def dev_env() -> dict[str, str]:
    """This environment without the services `router dev` starts itself."""
    return {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL")}


def start_dev(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """`router dev` started, and its READY line's fields once it printed it (fails naming its output)."""
    out = tmp_path / "dev.out"
    with open(out, "wb") as f:
        dev = subprocess.Popen([sys.executable, "-m", "router", "dev", "--log-dir", str(tmp_path / "logs")], cwd=ROOT,
                               stdout=f, stderr=subprocess.STDOUT, env=env)
    try:
        line = wait_for(lambda: next((ln for ln in out.read_text().splitlines() if ln.startswith("READY")), None)
                        or (dev.poll() is not None and f"exited: {out.read_text()}"), deadline_s=120,
                        what="router dev to print READY")
        assert str(line).startswith("READY"), line
    except BaseException:
        stop_dev(dev)
        raise
    return dev, dict(pair.split("=", 1) for pair in str(line).split()[1:])


def stop_dev(dev: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if it has not stopped within a minute."""
    dev.send_signal(signal.SIGTERM)
    try:
        dev.wait(60)
    except subprocess.TimeoutExpired:
        dev.kill()
        dev.wait(10)


def test_a_signed_webhook_reaches_the_partner_once_and_bad_ones_are_refused(tmp_path: Path) -> None:
    env = dev_env()
    dev, ready = start_dev(tmp_path, env)
    try:
        hook = f"{ready['gateway']}/v1/hooks/acme/zendesk"
        event = {"event_id": "zd-e2e-1", "type": "ticket.escalated", "sequence": 1,
                 "occurred_at": "2026-11-22T09:00:00Z",
                 "data": {"ticket": {"id": 8801, "title": "Checkout is down", "priority": "high"}}}
        body, headers = _signed(event, "msg_e2e_1")

        status, answer = _post(hook, body, headers)
        assert status == 202, answer
        assert answer["event_id"] == "zd-e2e-1"
        status, answer = _post(hook, body, {**headers, "webhook-signature": "v1,AAAA"})
        assert (status, answer["code"]) == (401, "gateway.bad_signature")
        status, answer = _post(hook, b"{not json", _signed({}, "msg_e2e_2")[1])
        assert status in (400, 401), answer  # signed over another body: the signature fails first
        status, _ = _post(hook, body, headers)  # the partner retried the same webhook
        assert status == 202

        ledger_url = f"{ready['partner']}/_ledger?destination=pagerduty"
        wait_for(lambda: _get(ledger_url)["accepted"], deadline_s=60, what="the incident at the partner")
        ledger = _get(ledger_url)
        assert list(ledger["accepted"].values()) == [1], "the retried webhook was deduplicated"
        record = ledger["records"][0]["record"]
        assert (record["incident_key"], record["severity"]) == ("acme:8801", 1)

        # A GitHub-style issue (issue 21): no id in the payload, X-Hub-Signature-256 over the body; the
        # spec reads the id the gateway wrote (`event_id: $event_id`) and the issue reaches the tracker.
        issue = {"action": "opened", "repository": {"full_name": "acme/shop"},
                 "issue": {"id": 2001, "number": 42, "title": "Checkout button does nothing", "body": None,
                           "state": "open", "updated_at": "2026-11-22T09:00:00Z", "user": {"login": "ana"},
                           "html_url": "https://github.example/acme/shop/issues/42", "labels": [{"name": "bug"}]}}
        gh_body = json.dumps(issue).encode()
        digest = hmac.new(DEV_SECRETS["GITHUB_WEBHOOK_SECRET"].encode(), gh_body, hashlib.sha256).hexdigest()
        gh_headers = {"Content-Type": "application/json", "X-GitHub-Event": "issues",
                      "X-GitHub-Delivery": "72d4c6a0-e2e", "X-Hub-Signature-256": f"sha256={digest}"}
        status, answer = _post(f"{ready['gateway']}/v1/hooks/acme/github", gh_body, gh_headers)
        assert status == 202, answer
        jira_url = f"{ready['partner']}/_ledger?destination=jira"
        wait_for(lambda: _get(jira_url)["accepted"], deadline_s=60, what="the issue at the tracker")
        [jira] = _get(jira_url)["records"]
        assert (jira["record"]["key"], jira["record"]["status"], jira["record"]["labels"]) == (
            "acme:acme/shop#42", "To Do", ["bug"])

        listing = subprocess.run([sys.executable, "-m", "router", "dlq", "ls", "--json"], cwd=ROOT, env={
            **env, "KAFKA_BOOTSTRAP_SERVERS": ready["kafka"], "SCHEMA_REGISTRY_URL": ready["registry"]},
            capture_output=True, text=True, timeout=120, check=True)
        depths = {doc["topic"]: doc["depth"] for doc in map(json.loads, listing.stdout.splitlines())}
        assert depths.get("ingest.zendesk.dlq") == 0 and depths.get("delivery.pagerduty.dlq") == 0
    finally:
        stop_dev(dev)
    assert dev.returncode == 0

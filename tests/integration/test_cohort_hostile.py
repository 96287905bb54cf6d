"""`router cohort sync` on snapshots that would hurt an audience, run as a user runs it.

Issue 15, finding 6: an empty snapshot file removed every member of an audience (exit 0, 1,996 of
1,996 removed). An empty snapshot, or one that removes more than the allowed share of the last
synced membership, is now refused with one line and exit 2 unless a flag confirms it; hostile
files (binary, not UTF-8, huge lines and fields) end as one line too, never a traceback.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from router.settings import Settings
from support.workers import worker_env

pytestmark = pytest.mark.timeout(600)

DEADLINE_S = 120.0


def users(a: int, b: int) -> str:
    return "".join(f"user-{n:06d}\n" for n in range(a, b))


class Cli:
    """``router cohort sync --audience <name>-aud`` against the session's broker, Redis and registry."""

    def __init__(self, settings: Settings, registry_url: str, tmp: Path, name: str) -> None:
        self.audience = f"{name}-aud"
        self.tmp = tmp
        self.bootstrap = settings.kafka_bootstrap_servers or ""
        self.env = worker_env(self.bootstrap, settings.redis_url or "", registry_url, f"{name}:")

    def file(self, content: str | bytes, stem: str) -> Path:
        path = self.tmp / stem
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
        return path

    def sync(self, snapshot: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "router", "cohort", "sync", "--audience", self.audience,
                               "--snapshot", str(snapshot), *args], capture_output=True, text=True, env=self.env,
                              timeout=DEADLINE_S, check=False)

    def records(self) -> int:
        """Records on cohort.<audience> (its high watermarks; the topic holds one batch per record here)."""
        topic = f"cohort.{self.audience}"
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "probe"})
        try:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
        finally:
            consumer.close()


def summary(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def refused(done: subprocess.CompletedProcess[str], code: str) -> str:
    """Exit 2 with exactly one stderr line, ``router: error [<code>]: …``, and nothing on stdout."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith(f"router: error [{code}]: "), lines[0]
    assert done.stdout == ""
    return lines[0]


@pytest.fixture
def cli(settings: Settings, registry_url: str, tmp_path: Path, name: str) -> Cli:
    return Cli(settings, registry_url, tmp_path, name)


def test_an_empty_snapshot_is_refused_unless_confirmed(cli: Cli) -> None:
    base = cli.file(users(0, 20), "base.txt")
    assert summary(cli.sync(base)).startswith("added=20 removed=0 ")
    published = cli.records()

    line = refused(cli.sync(cli.file("", "empty.txt")), "cohort.empty_snapshot")
    assert "empty.txt" in line and "--allow-empty" in line and "nothing was published" in line
    # Only blank lines, skipped: no id left is the same as an empty file.
    refused(cli.sync(cli.file("\n \n\n", "blank.txt"), "--on-invalid", "skip"), "cohort.empty_snapshot")
    refused(cli.sync(cli.file("id\n", "header-only.csv")), "cohort.empty_snapshot")
    assert cli.records() == published, "a refused run publishes nothing"
    assert summary(cli.sync(base)).startswith("added=0 removed=0 unchanged=20 records=0"), "state untouched"

    assert summary(cli.sync(cli.file("", "empty.txt"), "--allow-empty")).startswith("added=0 removed=20 ")


def test_removing_more_than_the_allowed_share_is_refused_unless_confirmed(cli: Cli) -> None:
    assert summary(cli.sync(cli.file(users(0, 100), "base.txt"))).startswith("added=100 removed=0 ")
    published = cli.records()

    shrunk = cli.file(users(0, 40) + users(1000, 1010), "shrunk.txt")  # 60 of 100 leave
    line = refused(cli.sync(shrunk), "cohort.too_many_removals")
    assert "60 of 100" in line and "50%" in line and "--max-removal-share" in line
    refused(cli.sync(shrunk, "--max-removal-share", "0.59"), "cohort.too_many_removals")
    assert cli.records() == published

    assert summary(cli.sync(shrunk, "--max-removal-share", "0.6")).startswith("added=10 removed=60 unchanged=40 ")
    # 25 of the 50 members now synced leave: exactly half is within the default limit.
    assert summary(cli.sync(cli.file(users(0, 15) + users(1000, 1010), "half.txt"))).startswith(
        "added=0 removed=25 ")
    refused(cli.sync(shrunk, "--max-removal-share", "1.5"), "config.invalid")


def _hostile_files() -> dict[str, tuple[bytes, tuple[str, ...], str]]:
    """name → (content, extra arguments, expected error code)."""
    noise = random.Random(15).randbytes(64 * 1024)
    return {
        "binary.txt": (noise, (), "cohort.invalid_snapshot"),
        "binary.csv": (b"id\n" + noise, (), "cohort.invalid_snapshot"),
        "binary.parquet": (noise, (), "cohort.snapshot_unreadable"),
        "latin1.txt": ("user-1\ncafé\n".encode("latin-1"), (), "cohort.invalid_snapshot"),
        "utf16.txt": ("user-1\nuser-2\n".encode("utf-16"), (), "cohort.invalid_snapshot"),
        "long-line.txt": (b"user-1\n" + b"x" * 8_000_000 + b"\n", (), "cohort.invalid_snapshot"),
        "huge-field.csv": (b"id\nuser-1\n" + b"y" * 200_000 + b"\nuser-2\n", (), "cohort.invalid_snapshot"),
        "nul.csv": (b"id\nus\x00er\n", (), "cohort.invalid_snapshot"),
        "multiline-header.csv": (b'"a\nb",\xff\xfe\nuser-1,x\n', ("--column", "id"), "cohort.snapshot_unreadable"),
        "unclosed-quote.csv": (b'id\n"user-1\nuser-2\n' + b"z" * 200_000, (), "cohort.invalid_snapshot"),
    }


@pytest.mark.parametrize("stem", sorted(_hostile_files()))
def test_a_hostile_snapshot_file_is_one_line_and_exit_2(cli: Cli, stem: str) -> None:
    content, args, code = _hostile_files()[stem]
    refused(cli.sync(cli.file(content, stem), *args), code)


def test_a_folder_or_a_missing_file_is_one_line(cli: Cli) -> None:
    refused(cli.sync(cli.tmp), "cohort.snapshot_unreadable")
    refused(cli.sync(cli.tmp / "missing.txt"), "cohort.snapshot_unreadable")

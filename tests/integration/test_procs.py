"""The one child-process helper (tools/dev/embedded/procs.py) that `router dev`, the benchmarks and
the tests start processes with: READY lines, early exits, SIGTERM then SIGKILL, a crash on purpose."""

from __future__ import annotations

import gc
import signal
import sys
import warnings
from pathlib import Path

import pytest

from router.errors import ConfigError
from tools.dev.embedded.procs import ChildProcess

# Prints READY, then ignores SIGTERM when told to (a child that must be SIGKILLed at the end of its grace).
SCRIPT = """
import signal, sys, time
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if sys.argv[1] == "exit":
    print("failing on purpose", flush=True)
    sys.exit(3)
print("starting", flush=True)
print("READY child=x", flush=True)
time.sleep(60)
"""


def _child(tmp_path: Path, mode: str) -> ChildProcess:
    return ChildProcess(f"{mode} child", [sys.executable, "-c", SCRIPT, mode], log=tmp_path / f"{mode}.log")


def test_it_waits_for_the_ready_line_and_stops_in_the_grace(tmp_path: Path) -> None:
    child = _child(tmp_path, "polite")
    assert child.wait_for_line("READY", deadline_s=30) == "READY child=x"
    assert child.stop(grace_s=10) is True
    assert child.proc.returncode == -signal.SIGTERM and not child.alive()
    assert child.stop() is True  # stopping again is a no-op


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    child = _child(tmp_path, "stubborn")
    child.wait_for_line("READY", deadline_s=30)
    assert child.stop(grace_s=0.5) is False
    assert child.proc.returncode == -signal.SIGKILL


def test_an_early_exit_is_named_with_the_end_of_its_log(tmp_path: Path) -> None:
    child = _child(tmp_path, "exit")
    named = r"(?s)exit child exited with code 3 before printing READY.*failing on purpose"
    with pytest.raises(ConfigError, match=named):
        child.wait_for_line("READY", deadline_s=30)
    # Nobody stops a child that is gone: its log is closed already, not left to the garbage collector.
    log = str(child.log)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        del child
        gc.collect()  # collects other tests' garbage too: only this child's log file counts
    assert [str(w.message) for w in seen if issubclass(w.category, ResourceWarning) and log in str(w.message)] == []


def test_kill_is_a_sigkill_crash(tmp_path: Path) -> None:
    child = _child(tmp_path, "polite")
    child.wait_for_line("READY", deadline_s=30)
    assert child.kill() == child.pid
    assert child.proc.returncode == -signal.SIGKILL

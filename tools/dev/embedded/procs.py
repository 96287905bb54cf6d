"""Child processes that die with their parent and stop in a fixed way: the one helper `router dev`,
the benchmarks and the tests start processes with.

Every child is started with ``PR_SET_PDEATHSIG`` so that it dies even when its parent is SIGKILLed
(no orphans; the signal follows the *thread* that started it, so start children from a thread that
lives as long as they should), with its output in a log file (or discarded), and:

- waited for with :meth:`ChildProcess.wait_until` (any condition, e.g. a port answering) or
  :meth:`ChildProcess.wait_for_line` (a ``READY`` line in its log), failing early when it exits;
- stopped with :meth:`ChildProcess.stop`: SIGTERM, a grace period, then SIGKILL (Tansu keeps running
  ~10 s after SIGTERM while clients hold connections), or crashed on purpose with
  :meth:`ChildProcess.kill` (SIGKILL, as the resilience tests do).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from router.errors import ConfigError
from router.procs import die_with_parent


def tcp_answers(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts a TCP connection on host:port."""
    try:
        socket.create_connection((host, port), timeout).close()
    except OSError:
        return False
    return True


class ChildProcess:
    """A started child with a name, for error messages, and an orderly stop."""

    def __init__(self, name: str, argv: Sequence[str], *, log: Path | None = None,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self._terminated = False
        self._out: IO[bytes] | None = open(log, "ab") if log else None  # noqa: SIM115 - closed in stop()/kill()
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=self._out or subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - started before any thread needs it
                env=dict(env) if env is not None else None,
                cwd=cwd,
            )
        except OSError as exc:
            self._close_log()
            raise ConfigError(f"could not start {name} ({self.argv[0]}): {exc.strerror}") from None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        """What the child wrote to its log so far ("" without a log)."""
        if self.log is None:
            return ""
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, chars: int = 2000) -> str:
        """The end of the log, for error messages."""
        return self.output()[-chars:]

    def wait_until(self, ready: Callable[[], bool], deadline_s: float, what: str) -> None:
        """Poll ``ready`` until true; raise ConfigError if the child exits or the deadline passes."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if ready():
                return
            if not self.alive():
                self._close_log()  # nothing will stop() a child that is gone
                raise ConfigError(f"{self.name} exited with code {self.proc.returncode} before {what}"
                                  + (f"; its log ends:\n{self.tail()}" if self.log else ""))
            time.sleep(0.05)
        self.stop()
        raise ConfigError(f"{self.name} did not become ready ({what}) within {deadline_s:.0f}s"
                          + (f"; its log ends:\n{self.tail()}" if self.log else ""))

    def line_starting(self, prefix: str) -> str | None:
        """The first line of the log starting with ``prefix``, once the child has written it."""
        return next((line for line in self.output().splitlines() if line.startswith(prefix)), None)

    def wait_for_line(self, prefix: str, deadline_s: float) -> str:
        """Wait until the log holds a line starting with ``prefix`` (e.g. ``READY``) and return it."""
        if self.log is None:
            raise ValueError(f"{self.name} has no log to read a {prefix!r} line from")
        self.wait_until(lambda: self.line_starting(prefix) is not None, deadline_s, f"printing {prefix}")
        return self.line_starting(prefix) or ""

    def kill(self) -> int:
        """SIGKILL and reap: the crash a test inflicts. Returns the pid killed."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._close_log()
        return self.pid

    def terminate(self) -> None:
        """SIGTERM without waiting, to stop several children at once; :meth:`stop` then waits."""
        if self.alive() and not self._terminated:
            self._terminated = True
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def stop(self, grace_s: float = 3.0) -> bool:
        """SIGTERM (once), wait up to ``grace_s``, then SIGKILL; always reaps the child and closes its log.

        True when it exited within the grace (or had exited already), False when it had to be killed.
        """
        in_grace = True
        if self.alive():
            self.terminate()
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                in_grace = False
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(10)
        self._close_log()
        return in_grace

    def _close_log(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

"""Child processes that die with their parent and stop in a fixed way.

Every embedded service is a child started with ``PR_SET_PDEATHSIG`` so that it dies even
when the router is SIGKILLed (no orphans), and stopped with SIGTERM, a grace period, then
SIGKILL: Tansu keeps running ~10 s after SIGTERM while clients hold connections.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

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

    def __init__(self, name: str, argv: Sequence[str], *, log: Path | None = None, env: dict[str, str] | None = None):
        self.name = name
        self.argv = list(argv)
        self._log = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - started before any thread needs it
                env=env,
            )
        except OSError as exc:
            raise ConfigError(f"could not start {name} ({self.argv[0]}): {exc.strerror}") from None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_until(self, ready: Callable[[], bool], deadline_s: float, what: str) -> None:
        """Poll ``ready`` until true; raise ConfigError if the child exits or the deadline passes."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if ready():
                return
            if not self.alive():
                raise ConfigError(f"{self.name} exited with code {self.proc.returncode} before {what}")
            time.sleep(0.05)
        self.stop()
        raise ConfigError(f"{self.name} did not become ready ({what}) within {deadline_s:.0f}s")

    def stop(self, grace_s: float = 3.0) -> None:
        """SIGTERM, wait up to ``grace_s``, then SIGKILL; always reaps the child."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(10)
        if self._log is not subprocess.DEVNULL:
            self._log.close()  # type: ignore[union-attr]

"""Child processes that die with their parent and stop in a fixed way.

Every embedded service is a child started with ``PR_SET_PDEATHSIG`` so that it dies even
when the router is SIGKILLed (no orphans), and stopped with SIGTERM, a grace period, then
SIGKILL: Tansu keeps running ~10 s after SIGTERM while clients hold connections.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from router.errors import ConfigError

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when ``port`` can be bound on ``host``."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


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

"""The READY line: how a process tells whoever started it that it is up.

Every long-running command prints exactly one line, ``READY key=value ...``, once it serves
(``router dev`` waits on its children's, tests and scripts on ``router dev``'s). This module is
the one place that writes and reads that line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def http_url(host: str, port: int) -> str:
    """``http://host:port``, bracketing IPv6 addresses."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def announce(**pairs: str) -> None:
    """Print the READY line (flushed: the reader may be waiting on a pipe or a log file)."""
    print("READY " + " ".join(f"{key}={value}" for key, value in pairs.items()), flush=True)


def announcer(key: str) -> Callable[[str], None]:
    """A callback announcing ``READY <key>=<url>`` (for servers that learn their port late)."""
    return lambda url: announce(**{key: url})


def parse(line: str) -> dict[str, str] | None:
    """The pairs of a READY line, or None for any other line."""
    if not line.startswith("READY "):
        return None
    return dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)


def read_pairs(log: Path) -> dict[str, str]:
    """The pairs of the first READY line in ``log`` ({} while there is none)."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return {}
    for line in text.splitlines():
        pairs = parse(line)
        if pairs is not None:
            return pairs
    return {}

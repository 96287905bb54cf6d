"""The embedded Schema Registry against a real broker, driven by the real Confluent client.

Each test stores its state in its own ``<name>._schemas`` topic. Registries run in-process
(one thread and event loop each, so the synchronous client can call them) or, for the CLI,
as a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from aiohttp import web
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from router.errors import ConfigError
from router.kafka import admin_client, consumer_config, ensure_topics, producer_config
from router.procs import free_port
from router.settings import Settings
from services.registry.app import create_app
from support.services import wait_for

ORDER_V1 = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "namespace": "shop",
        "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "long"}],
    }
)
ORDER_V2 = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "namespace": "shop",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "amount", "type": "long"},
            {"name": "currency", "type": "string", "default": "EUR"},
        ],
    }
)
ORDER_NO_DEFAULT = ORDER_V2.replace(', "default": "EUR"', "")
ORDER_TYPE_CHANGED = ORDER_V1.replace('"amount", "type": "long"', '"amount", "type": "string"')


def avro(text: str) -> Schema:
    return Schema(text, "AVRO")


def numbered(n: int) -> Schema:
    """A distinct schema per ``n``."""
    return avro(json.dumps({"type": "record", "name": f"R{n}", "fields": [{"name": "x", "type": "int"}]}))


class RunningRegistry:
    """``create_app`` served on a free port by its own thread and event loop."""

    def __init__(self, settings: Settings, topic: str, **app_options: float) -> None:
        self._app = create_app(settings, topic=topic, **app_options)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.url = ""
        self._clients: list[SchemaRegistryClient] = []
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        runner = web.AppRunner(self._app, shutdown_timeout=5)
        try:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            self._ready.set()
            await self._stop.wait()
        except BaseException as exc:
            self._error = exc
        finally:
            await runner.cleanup()
            self._ready.set()

    def start(self, deadline_s: float = 30.0) -> RunningRegistry:
        self._thread.start()
        if not self._ready.wait(deadline_s):
            raise AssertionError(f"registry did not start within {deadline_s}s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, deadline_s: float = 20.0) -> None:
        """Close the clients handed out (each holds an HTTP connection pool), then stop serving."""
        for client in self._clients:
            client.close()
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(deadline_s)
        assert not self._thread.is_alive(), "registry thread did not stop"

    def client(self) -> SchemaRegistryClient:
        """A fresh client: no cache shared with other tests or registries; closed by :meth:`stop`."""
        client = SchemaRegistryClient({"url": self.url})
        self._clients.append(client)
        return client

    def call(
        self, method: str, path: str, body: object = None, content_type: str = "application/vnd.schemaregistry.v1+json"
    ) -> tuple[int, Any]:
        """A raw HTTP call: (status, decoded JSON body)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


@pytest.fixture
def registry_settings(kafka_bootstrap: str) -> Settings:
    return Settings(kafka_bootstrap_servers=kafka_bootstrap)


@pytest.fixture
def schemas_topic(name: str) -> str:
    return f"{name}._schemas"


@pytest.fixture
def registry(registry_settings: Settings, schemas_topic: str) -> Iterator[RunningRegistry]:
    running = RunningRegistry(registry_settings, schemas_topic).start()
    yield running
    running.stop()


@pytest.fixture
def second_registry(registry_settings: Settings, schemas_topic: str) -> Iterator[RunningRegistry]:
    running = RunningRegistry(registry_settings, schemas_topic).start()
    yield running
    running.stop()


def schema_json(client: SchemaRegistryClient, schema_id: int) -> Any:
    return json.loads(client.get_schema(schema_id).schema_str or "null")


def http_status(exc: pytest.ExceptionInfo[SchemaRegistryError]) -> tuple[int, int]:
    return exc.value.http_status_code, exc.value.error_code


# -- the client, end to end --------------------------------------------------------------------


def test_avro_round_trip_through_a_topic(registry: RunningRegistry, registry_settings: Settings, name: str) -> None:
    topic = f"{name}.orders"
    ensure_topics(admin_client(registry_settings), [topic], partitions=1)
    context = SerializationContext(topic, MessageField.VALUE)
    serialize = AvroSerializer(registry.client(), ORDER_V1)
    order = {"id": "o-1", "amount": 1250}
    producer = Producer(producer_config(registry_settings))
    producer.produce(topic, value=serialize(order, context))
    assert producer.flush(20) == 0

    consumer = Consumer(consumer_config(registry_settings, f"{name}.reader"))
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    try:
        message = wait_for(lambda: consumer.poll(0.2), deadline_s=30, what="the serialized order")
    finally:
        consumer.close()
    assert isinstance(message, Message) and message.error() is None
    assert AvroDeserializer(registry.client())(message.value(), context) == order
    registered = registry.client().get_latest_version(f"{topic}-value")
    assert registered.version == 1
    assert (message.value() or b"")[1:5] == (registered.schema_id or 0).to_bytes(4, "big")


def test_registering_is_idempotent_and_ids_are_global(registry: RunningRegistry) -> None:
    client = registry.client()
    first = client.register_schema("orders-value", avro(ORDER_V1))
    again = registry.client().register_schema("orders-value", avro(json.dumps(json.loads(ORDER_V1), indent=2)))
    elsewhere = registry.client().register_schema("archive-value", avro(ORDER_V1))
    assert first == again == elsewhere
    assert client.get_versions("orders-value") == [1]
    assert sorted(client.get_subjects()) == ["archive-value", "orders-value"]
    found = registry.client().lookup_schema("orders-value", avro(ORDER_V1))
    assert (found.schema_id, found.version) == (first, 1)
    assert schema_json(client, first) == json.loads(ORDER_V1)


def test_a_compatible_change_is_version_2(registry: RunningRegistry) -> None:
    client = registry.client()
    v1 = client.register_schema("orders-value", avro(ORDER_V1))
    assert client.test_compatibility("orders-value", avro(ORDER_V2))
    v2 = client.register_schema("orders-value", avro(ORDER_V2))
    assert v2 != v1
    latest = client.get_latest_version("orders-value")
    assert (latest.version, latest.schema_id) == (2, v2)
    assert client.get_version("orders-value", 1).schema_id == v1


@pytest.mark.parametrize("incompatible", [ORDER_NO_DEFAULT, ORDER_TYPE_CHANGED], ids=["no-default", "type-change"])
def test_an_incompatible_change_is_409(registry: RunningRegistry, incompatible: str) -> None:
    client = registry.client()
    client.register_schema("orders-value", avro(ORDER_V1))
    assert not client.test_compatibility("orders-value", avro(incompatible))
    with pytest.raises(SchemaRegistryError) as caught:
        client.register_schema("orders-value", avro(incompatible))
    assert http_status(caught) == (409, 409)
    assert "incompatible" in caught.value.error_message
    assert client.get_versions("orders-value") == [1]
    status, body = registry.call(
        "POST", "/compatibility/subjects/orders-value/versions/latest?verbose=true", {"schema": incompatible}
    )
    assert status == 200 and body["is_compatible"] is False and body["messages"]


def test_config_get_put_and_delete(registry: RunningRegistry) -> None:
    client = registry.client()
    assert client.get_compatibility() == "BACKWARD"
    client.register_schema("orders-value", avro(ORDER_V1))
    with pytest.raises(SchemaRegistryError) as caught:
        client.get_compatibility("orders-value")
    assert http_status(caught) == (404, 40408)
    assert client.set_compatibility("orders-value", "NONE") == {"compatibility": "NONE"}
    assert client.get_compatibility("orders-value") == "NONE"
    client.register_schema("orders-value", avro(ORDER_TYPE_CHANGED))  # NONE lets anything through
    assert registry.call("PUT", "/config", {"compatibility": "sideways"})[1] == {
        "error_code": 42203,
        "message": "Invalid compatibility level 'sideways'. Valid values are none, backward, forward, full, "
        "backward_transitive, forward_transitive, and full_transitive",
    }
    client.set_compatibility(level="FULL_TRANSITIVE")
    assert client.get_compatibility() == "FULL_TRANSITIVE"
    assert registry.call("DELETE", "/config/orders-value") == (200, {"compatibilityLevel": "NONE"})
    assert registry.call("GET", "/config/orders-value?defaultToGlobal=true") == (
        200,
        {"compatibilityLevel": "FULL_TRANSITIVE"},
    )


def test_delete_subject_soft_then_permanent(registry: RunningRegistry) -> None:
    client = registry.client()
    v1 = client.register_schema("orders-value", avro(ORDER_V1))
    client.register_schema("orders-value", avro(ORDER_V2))
    assert client.delete_subject("orders-value") == [1, 2]
    assert client.get_subjects() == []
    with pytest.raises(SchemaRegistryError) as caught:
        registry.client().lookup_schema("orders-value", avro(ORDER_V1))
    assert http_status(caught) == (404, 40401)
    assert registry.call("GET", "/subjects/orders-value/versions?deleted=true") == (200, [1, 2])
    assert client.delete_subject("orders-value", permanent=True) == [1, 2]
    assert registry.call("GET", "/subjects?deleted=true") == (200, [])
    assert schema_json(registry.client(), v1) == json.loads(ORDER_V1)  # ids stay readable
    assert registry.client().register_schema("orders-value", avro(ORDER_V1)) == v1


def test_delete_one_version(registry: RunningRegistry) -> None:
    client = registry.client()
    client.register_schema("orders-value", avro(ORDER_V1))
    client.register_schema("orders-value", avro(ORDER_V2))
    with pytest.raises(SchemaRegistryError) as caught:
        client.delete_version("orders-value", 2, permanent=True)
    assert http_status(caught) == (404, 40407)
    assert client.delete_version("orders-value", 2) == 2
    assert registry.client().get_versions("orders-value") == [1]
    assert registry.client().get_latest_version("orders-value").version == 1
    assert client.delete_version("orders-value", 2, permanent=True) == 2
    assert registry.call("GET", "/subjects/orders-value/versions?deleted=true") == (200, [1])


def test_json_content_types_are_accepted_and_others_refused(registry: RunningRegistry) -> None:
    status, body = registry.call("POST", "/subjects/plain-value/versions", {"schema": ORDER_V1}, "application/json")
    assert status == 200 and body["id"] >= 1
    status, body = registry.call("POST", "/subjects/plain-value/versions", {"schema": ORDER_V1}, "text/plain")
    assert status == 415 and body["error_code"] == 415


def test_errors_use_the_confluent_body(registry: RunningRegistry) -> None:
    registry.client().register_schema("orders-value", avro(ORDER_V1))
    cases = {
        ("GET", "/subjects/missing/versions/1"): (404, 40401),
        ("GET", "/subjects/orders-value/versions/9"): (404, 40402),
        ("GET", "/subjects/orders-value/versions/zero"): (422, 42202),
        ("GET", "/schemas/ids/999"): (404, 40403),
        ("GET", "/no/such/route"): (404, 404),
    }
    for (method, path), expected in cases.items():
        status, body = registry.call(method, path)
        assert (status, body["error_code"]) == expected, (path, body)
        assert body["message"]
    status, body = registry.call("POST", "/subjects/orders-value", {"schema": ORDER_V2})
    assert (status, body) == (404, {"error_code": 40403, "message": "Schema not found"})
    status, body = registry.call("POST", "/subjects/x/versions", {"schema": '{"type": "record", "name": "A"}'})
    assert status == 422 and body["error_code"] == 42201 and "fields" in body["message"]
    status, body = registry.call("POST", "/subjects/x/versions", {"schema": "{}", "schemaType": "JSON"})
    assert status == 422 and body["error_code"] == 42201 and "AVRO only" in body["message"]


# -- several processes, one log ----------------------------------------------------------------


def test_two_registries_agree_on_ids(registry: RunningRegistry, second_registry: RunningRegistry) -> None:
    registered = registry.client().register_schema("orders-value", avro(ORDER_V1))
    # B has not necessarily read A's record yet; a miss makes it catch up before answering.
    assert schema_json(second_registry.client(), registered) == json.loads(ORDER_V1)
    assert second_registry.client().lookup_schema("orders-value", avro(ORDER_V1)).schema_id == registered
    assert second_registry.client().register_schema("orders-value", avro(ORDER_V2)) == registered + 1
    assert registry.client().get_latest_version("orders-value").version == 2


def test_racing_registrations_get_distinct_ids(registry: RunningRegistry, second_registry: RunningRegistry) -> None:
    def register(args: tuple[RunningRegistry, int]) -> tuple[int, int]:
        where, n = args
        return n, where.client().register_schema(f"race-{n}-value", numbered(n))

    jobs = [(registry if n % 2 else second_registry, n) for n in range(16)]
    # The same schema raced from both sides as well: one id, one version.
    jobs += [(registry, 100), (second_registry, 100)]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(register, jobs))
    ids = dict(results)
    assert sorted(set(ids.values())) == list(range(1, 18))
    assert len({schema_id for n, schema_id in results if n == 100}) == 1
    for where in (registry, second_registry):
        client = where.client()
        for n, schema_id in ids.items():
            assert schema_json(client, schema_id)["name"] == f"R{n}"
    assert second_registry.client().get_versions("race-100-value") == [1]


def test_a_restarted_registry_keeps_ids(registry_settings: Settings, schemas_topic: str) -> None:
    first = RunningRegistry(registry_settings, schemas_topic).start()
    try:
        v1 = first.client().register_schema("orders-value", avro(ORDER_V1))
        v2 = first.client().register_schema("orders-value", avro(ORDER_V2))
        first.client().set_compatibility("orders-value", "FULL")
    finally:
        first.stop()
    restarted = RunningRegistry(registry_settings, schemas_topic).start()
    try:
        client = restarted.client()
        assert [client.get_version("orders-value", n).schema_id for n in (1, 2)] == [v1, v2]
        assert client.get_compatibility("orders-value") == "FULL"
        assert client.register_schema("other-value", numbered(1)) == v2 + 1
    finally:
        restarted.stop()


def test_an_unreachable_broker_is_a_config_error(name: str) -> None:
    settings = Settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(ConfigError, match="no Kafka broker answered"):
        RunningRegistry(settings, f"{name}._schemas", connect_deadline_s=2.0).start()
    assert time.monotonic() - started < 20


# -- the CLI -----------------------------------------------------------------------------------


def registry_command() -> list[str]:
    """``router registry serve`` through the root CLI, as a user runs it."""
    return [sys.executable, "-m", "router", "registry", "serve"]


def read_line(proc: subprocess.Popen[str], deadline_s: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(deadline_s):
            raise AssertionError(f"no output from {proc.args!r} within {deadline_s}s")
    return proc.stdout.readline()


def test_serve_prints_ready_and_stops_on_sigterm(kafka_bootstrap: str, schemas_topic: str) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    with subprocess.Popen(  # leaving the block closes the stdout pipe
        [*registry_command(), "--port", "0", "--topic", schemas_topic],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            line = read_line(proc, deadline_s=60)
            assert line.startswith("READY registry=http://127.0.0.1:"), line
            url = line.strip().split("=", 1)[1]
            with SchemaRegistryClient({"url": url}) as client:
                assert client.register_schema("cli-value", avro(ORDER_V1)) == 1
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
            assert proc.stdout is not None and proc.stdout.read() == ""  # READY is the only stdout line
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_serve_on_a_busy_port_fails_with_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [*registry_command(), "--port", str(port)],
            capture_output=True,
            check=False,
            text=True,
            timeout=60,
            env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
        )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"router: error [config.invalid]: port {port} on 127.0.0.1 is in use; pick another with --port"
    ]

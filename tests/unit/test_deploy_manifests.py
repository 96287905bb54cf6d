"""The deployment files, checked with no cluster, no Docker engine and no network.

- ``k8s/base``: every object is validated against the Kubernetes JSON schemas that the
  ``kubernetes-validate`` package ships (offline, strict: unknown fields fail), for the oldest
  and the newest Kubernetes it knows. KEDA's ScaledObject is a CRD it does not know, so it is
  checked against a small schema written here plus the rules that matter (kafka trigger, the
  workers' consumer group, at most one replica per partition). Then the cross-references a
  schema cannot see: resources and generator files exist, the spec copies match the repository,
  PDBs and Services select a Deployment, probes point at declared ports, secrets are only
  referenced, and the mounted specs load.
- ``docker-compose.yml``: validated against the Compose Specification JSON schema, vendored in
  ``deploy/compose-spec.json`` (from the check-jsonschema wheel, Apache-2.0), then the
  structural rules: images or builds, ``depends_on`` targets with healthchecks, two route
  replicas, every ``/metrics`` scraped by ``deploy/prometheus.yml``, and the gateway and the
  delivery workers would start with ``deploy/.env.example``.
- ``docker compose config`` and ``kustomize build`` (they run tools) are in
  ``tests/integration/test_deploy_tools.py``.
"""

from __future__ import annotations

import argparse
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from router.spec.durations import parse_duration

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "k8s" / "base"
SPECS = BASE / "specs"
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus.yml"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
DOCS = ROOT / "docs" / "deploy.md"

KINDS = ("gateway", "route", "deliver", "admin")  # one Deployment each
WORKERS = {"route": "router.route", "deliver": "router.deliver"}  # KEDA-scaled kinds and their groups
PARTITIONS = 6  # ROUTER_TOPIC_PARTITIONS everywhere
METRICS_PORT = 9464
# The copies kustomize reads (it loads nothing outside k8s/base) and what they copy.
MIRRORS = {"integrations": ROOT / "integrations", "schemas/avro": ROOT / "schemas/avro", "sources": ROOT / "sources"}
GENERATED = {"router-integrations": "integrations", "router-schemas": "schemas/avro", "router-sources": "sources"}
MOUNTS = {"integrations": "/app/integrations", "schemas/avro": "/app/schemas/avro", "sources": "/app/sources"}
ENV_REF = re.compile(r"env:([A-Z][A-Z0-9_]*)")


# ---- loading ------------------------------------------------------------------------------------


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((BASE / "kustomization.yaml").read_text())


def base_objects() -> list[dict[str, Any]]:
    return [doc for name in kustomization()["resources"] for doc in load_docs(BASE / name)]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in base_objects() if o["kind"] == kind}


def config_literals() -> dict[str, str]:
    generator = next(g for g in kustomization()["configMapGenerator"] if g["name"] == "router-config")
    return dict(line.split("=", 1) for line in generator["literals"])


def generator_files(name: str) -> dict[str, str]:
    """ConfigMap key -> file (relative to k8s/base) of one configMapGenerator."""
    generator = next(g for g in kustomization()["configMapGenerator"] if g["name"] == name)
    files = {}
    for entry in generator["files"]:
        key, _, path = entry.rpartition("=")
        files[key or Path(path).name] = path
    return files


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def router_services() -> dict[str, dict[str, Any]]:
    """Compose services that run the router image, by name."""
    return {n: s for n, s in compose()["services"].items() if str(s.get("image", "")).startswith("event-router")}


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    """What a compose service's process sees: env files that exist, then ``environment``."""
    env: dict[str, str] = {}
    for entry in service.get("env_file", []):
        path = ROOT / (entry["path"] if isinstance(entry, dict) else entry)
        if path.exists():
            env.update(read_env_file(path))
    env.update({k: str(v) for k, v in (service.get("environment") or {}).items()})
    return env


def spec_env_refs(folder: Path) -> set[str]:
    return {m for f in folder.glob("*.yaml") for m in ENV_REF.findall(f.read_text())}


def repo_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping inside ``node``, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def selects(selector: dict[str, str], deployment: dict[str, Any]) -> bool:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ---- every file parses --------------------------------------------------------------------------


DEPLOY_YAML = sorted([COMPOSE, PROMETHEUS, *BASE.glob("*.yaml")])


@pytest.mark.parametrize("path", DEPLOY_YAML, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_deployment_file_parses(path: Path) -> None:
    assert load_docs(path), f"{path} holds no YAML document"


# ---- kustomize base: references -----------------------------------------------------------------


def test_kustomization_resources_exist_and_base_is_namespace_agnostic() -> None:
    k = kustomization()
    assert "namespace" not in k, "the base must not pin a namespace; set it in an overlay"
    for name in k["resources"]:
        assert (BASE / name).is_file(), f"kustomization.yaml lists {name}, which does not exist"
    for obj in base_objects():
        assert "namespace" not in obj["metadata"], f"{obj['kind']}/{obj['metadata']['name']} pins a namespace"


def test_configmap_generators_reference_files_inside_the_base() -> None:
    for name in GENERATED:
        files = generator_files(name)
        assert files, f"configMapGenerator {name} has no files"
        for key, rel in files.items():
            assert re.fullmatch(r"[-._a-zA-Z0-9]+", key), f"{name}: {key!r} is not a valid ConfigMap key"
            path = (BASE / rel).resolve()
            assert path.is_relative_to(BASE.resolve()), f"{name}: {rel} is outside k8s/base (kustomize refuses it)"
            assert path.is_file(), f"{name}: {rel} does not exist"


@pytest.mark.parametrize("mirror", sorted(MIRRORS))
def test_spec_copies_match_the_repository(mirror: str) -> None:
    original, copy = MIRRORS[mirror], SPECS / mirror
    fix = "refresh them as k8s/base/specs/README.md says"
    assert repo_files(copy) == repo_files(original), f"k8s/base/specs/{mirror} lists other files than {mirror}/; {fix}"
    for rel in sorted(repo_files(original)):
        same = (copy / rel).read_bytes() == (original / rel).read_bytes()
        assert same, f"k8s/base/specs/{mirror}/{rel} differs from {mirror}/{rel}; {fix}"


@pytest.mark.parametrize("configmap", sorted(GENERATED))
def test_every_spec_file_is_in_its_configmap(configmap: str) -> None:
    mirror = GENERATED[configmap]
    wanted = {f"specs/{mirror}/{rel}" for rel in repo_files(MIRRORS[mirror])}
    have = set(generator_files(configmap).values())
    missing = sorted(wanted - have)
    lines = "\n".join(f"      - {rel.removeprefix(f'specs/{mirror}/').replace('/', '__')}={rel}" for rel in missing)
    assert not missing, f"add to configMapGenerator {configmap} in k8s/base/kustomization.yaml:\n{lines}"
    assert have <= wanted, f"{configmap} names files that are not in {mirror}/: {sorted(have - wanted)}"


def spec_volumes(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Mount path -> volume, for the volumes of generated spec ConfigMaps."""
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    out = {}
    for mount in container(deployment).get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if volume.get("configMap", {}).get("name") in GENERATED:
            out[mount["mountPath"]] = volume
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_spec_volumes_put_every_key_back_at_its_path(kind: str, tmp_path: Path) -> None:
    """Rebuild what the pod sees from the volumes, then load it as the process would."""
    from router.spec.load import load_catalog
    from router.spec.sources import load_sources

    deployment = of_kind("Deployment")[kind]
    volumes = spec_volumes(deployment)
    assert volumes, f"{kind} mounts no spec ConfigMap"
    for mount_path, volume in volumes.items():
        configmap = volume["configMap"]["name"]
        mirror = GENERATED[configmap]
        assert mount_path == MOUNTS[mirror], f"{kind}: {configmap} must be mounted at {MOUNTS[mirror]}"
        files = generator_files(configmap)
        items = {i["key"]: i["path"] for i in volume["configMap"].get("items", [])}
        if not items:  # every key lands at the top of the mount: only right for flat folders
            items = {key: key for key in files}
        wanted = {key: rel.removeprefix(f"specs/{mirror}/") for key, rel in files.items()}
        lines = "\n".join(f"              - {{key: {k}, path: {p}}}" for k, p in sorted(wanted.items())
                          if items.get(k) != p)
        assert items == wanted, f"{kind}: the items of volume {volume['name']} must map every key to its path:\n{lines}"
        for key, rel in items.items():
            target = tmp_path / mirror / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((BASE / files[key]).read_bytes())
    if (tmp_path / "integrations").exists():
        catalog = load_catalog(tmp_path / "integrations", tmp_path / "schemas" / "avro")
        assert catalog.integrations, f"{kind}: the mounted specs hold no integration"
    if (tmp_path / "sources").exists():
        env = {name: "whsec_cGxhY2Vob2xkZXI=" for name in spec_env_refs(ROOT / "sources")}
        assert load_sources(tmp_path / "sources", env)


# ---- kustomize base: schemas --------------------------------------------------------------------

K8S_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())


def schema_cases() -> list[Any]:
    return [pytest.param(obj, version, id=f"{obj['kind']}/{obj['metadata']['name']}@{version}")
            for obj in base_objects() if obj["kind"] != "ScaledObject" for version in K8S_VERSIONS]


@pytest.mark.parametrize(("obj", "version"), schema_cases())
def test_object_matches_the_kubernetes_schema(obj: dict[str, Any], version: str) -> None:
    problem = None
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        problem = f"at {'/'.join(str(p) for p in exc.path) or '(root)'}: {exc.message}"
    assert problem is None, f"{obj['kind']}/{obj['metadata']['name']} {problem}"


STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
# The part of KEDA's ScaledObject CRD (keda.sh/v1alpha1) this base uses; trigger metadata is a
# map of strings in the CRD, so `lagThreshold: 100` (a number) would be refused by the API server.
SCALED_OBJECT_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"],
                     "properties": {"name": {"type": "string"}, "labels": STRING_MAP}},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers", "minReplicaCount", "maxReplicaCount"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object", "required": ["name"], "additionalProperties": False,
                    "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                   "name": {"type": "string"}, "envSourceContainerName": {"type": "string"}},
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "fallback": {"type": "object"},
                "advanced": {"type": "object"},
                "triggers": {
                    "type": "array", "minItems": 1,
                    "items": {
                        "type": "object", "required": ["type", "metadata"], "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"}, "name": {"type": "string"}, "metadata": STRING_MAP,
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "authenticationRef": {"type": "object", "required": ["name"]},
                        },
                    },
                },
            },
        },
    },
}


def worker_group(kind: str) -> str:
    args = container(of_kind("Deployment")[kind])["args"]
    if "--group" in args:
        return args[args.index("--group") + 1]
    assert kind == "route", f"{kind} must pass --group so KEDA and the worker agree on the group"
    return config_literals()["ROUTER_ROUTE_GROUP"]


@pytest.mark.parametrize("kind", sorted(WORKERS))
def test_workers_scale_on_consumer_lag_up_to_the_partition_count(kind: str) -> None:
    scaled = of_kind("ScaledObject")
    assert kind in scaled, f"no ScaledObject for {kind}"
    obj = scaled[kind]
    jsonschema.validate(obj, SCALED_OBJECT_SCHEMA)
    spec = obj["spec"]
    deployment = of_kind("Deployment").get(spec["scaleTargetRef"]["name"])
    assert deployment is not None and spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert deployment["metadata"]["name"] == kind
    assert "replicas" not in deployment["spec"], f"{kind}: the ScaledObject owns replicas; an apply would reset them"
    assert int(config_literals()["ROUTER_TOPIC_PARTITIONS"]) == PARTITIONS
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= PARTITIONS, "a consumer past the partitions idles"
    (trigger,) = spec["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert meta["consumerGroup"] == WORKERS[kind] == worker_group(kind)
    assert int(meta["lagThreshold"]) > 0
    assert meta.get("allowIdleConsumers", "false") == "false"
    if "bootstrapServersFromEnv" in meta:  # resolved from the target container's env, envFrom included
        assert meta["bootstrapServersFromEnv"] in config_literals()
        assert {"configMapRef": {"name": "router-config"}} in container(deployment)["envFrom"]
    else:
        assert meta.get("bootstrapServers"), "the kafka trigger needs bootstrapServers or bootstrapServersFromEnv"


# ---- kustomize base: what every Deployment has ---------------------------------------------------


def test_one_deployment_per_process_kind() -> None:
    deployments = of_kind("Deployment")
    assert set(deployments) == set(KINDS)
    for kind, deployment in deployments.items():
        command = container(deployment)["args"][0]
        assert command == kind, f"Deployment {kind} runs `router {command}`"
        assert container(deployment)["image"].split(":")[0] == "event-router"
    assert any(i["name"] == "event-router" for i in kustomization()["images"])


@pytest.mark.parametrize("kind", KINDS)
def test_deployment_has_probes_resources_and_a_locked_down_security_context(kind: str) -> None:
    deployment = of_kind("Deployment")[kind]
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment)
    assert selects(deployment["spec"]["selector"]["matchLabels"], deployment)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        assert probe in c, f"{kind} has no {probe}"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if probe in c:
            port = c[probe]["httpGet"]["port"]
            assert port in ports or port in ports.values(), f"{kind}.{probe} probes port {port}, which is not declared"
    for part in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"].get(part, {})), f"{kind} sets no {part} for cpu and memory"
    security = c["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod.get("automountServiceAccountToken") is False


@pytest.mark.parametrize("kind", KINDS)
def test_metrics_are_served_where_the_scrape_annotations_say(kind: str) -> None:
    deployment = of_kind("Deployment")[kind]
    c = container(deployment)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    port = int(annotations["prometheus.io/port"])
    assert annotations["prometheus.io/path"] == "/metrics"
    assert port in {p["containerPort"] for p in c["ports"]}
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    if kind in WORKERS:
        assert port == METRICS_PORT and env.get("ROUTER_METRICS_PORT") == str(METRICS_PORT)
    else:
        assert str(port) == c["args"][c["args"].index("--port") + 1]


def test_every_pdb_selects_a_deployment_and_every_deployment_has_one() -> None:
    deployments = of_kind("Deployment")
    covered = set()
    for name, pdb in of_kind("PodDisruptionBudget").items():
        selector = pdb["spec"]["selector"]["matchLabels"]
        matched = [d for d, obj in deployments.items() if selects(selector, obj)]
        assert matched, f"PodDisruptionBudget {name} selects no Deployment"
        assert ("minAvailable" in pdb["spec"]) != ("maxUnavailable" in pdb["spec"])
        for d in matched:
            replicas = deployments[d]["spec"].get("replicas", 1)
            assert pdb["spec"].get("maxUnavailable", 0) >= 1 or pdb["spec"]["minAvailable"] < replicas, \
                f"PodDisruptionBudget {name} would block every eviction of {d}"
        covered.update(matched)
    assert covered == set(deployments), f"no PodDisruptionBudget for {sorted(set(deployments) - covered)}"


def test_every_service_selects_a_deployment_port() -> None:
    services = of_kind("Service")
    assert {"gateway", "admin"} <= set(services)
    for name, service in services.items():
        matched = [d for d in of_kind("Deployment").values() if selects(service["spec"]["selector"], d)]
        assert len(matched) == 1, f"Service {name} selects {len(matched)} Deployments"
        declared = container(matched[0])["ports"]
        ports = {p["name"] for p in declared} | {p["containerPort"] for p in declared}
        for port in service["spec"]["ports"]:
            assert port.get("targetPort", port["port"]) in ports, f"Service {name} targets a port the pods do not open"


def secret_references() -> set[str]:
    names = set()
    for node in walk(base_objects()):
        if "secretKeyRef" in node:
            names.add(node["secretKeyRef"]["name"])
        if "secretRef" in node and isinstance(node["secretRef"], dict):
            names.add(node["secretRef"]["name"])
    return names


def test_secrets_are_referenced_by_name_never_defined() -> None:
    assert "secretGenerator" not in kustomization()
    assert not [o for o in base_objects() if o["kind"] == "Secret"], "the base must not define a Secret"
    names = secret_references()
    assert names
    docs = DOCS.read_text()
    for name in sorted(names):
        assert f"`{name}`" in docs, f"docs/deploy.md does not say how to create the Secret {name}"


def test_docs_name_every_variable_the_manifests_and_specs_use() -> None:
    docs = DOCS.read_text()
    names = set(config_literals()) | spec_env_refs(ROOT / "integrations") | spec_env_refs(ROOT / "sources")
    for node in walk(base_objects()):
        if "secretKeyRef" in node.get("valueFrom", {}):
            names.add(node["name"])
    missing = sorted(n for n in names if f"`{n}`" not in docs)
    assert not missing, f"docs/deploy.md does not explain {missing}"


# ---- the process arguments parse with the real CLI ---------------------------------------------


def argv_cases() -> list[Any]:
    cases = [pytest.param(container(d)["args"], id=f"k8s-{k}") for k, d in of_kind("Deployment").items()]
    cases += [pytest.param(s["command"], id=f"compose-{n}") for n, s in router_services().items()]
    return cases


@pytest.mark.parametrize("argv", argv_cases())
def test_process_arguments_parse_with_the_router_cli(argv: list[str]) -> None:
    from router.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert argv[0] in commands, f"`router {argv[0]}` is named in a manifest but not registered in router/cli.py"
    try:
        parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"`router {' '.join(argv)}` is refused by the router CLI")


# ---- docker-compose.yml ------------------------------------------------------------------------


def test_compose_matches_the_compose_specification() -> None:
    schema = json.loads((ROOT / "deploy" / "compose-spec.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, "\n".join(errors)
    # The vendored schema is strict enough to catch a misspelt key.
    assert list(validator.iter_errors({"services": {"x": {"image": "a", "dependson": ["y"]}}}))


def test_compose_runs_the_whole_stack() -> None:
    services = compose()["services"]
    assert {"kafka", "schema-registry", "redis", "gateway", "route", "deliver", "admin",
            "partner-sim", "prometheus"} <= set(services)
    kafka = services["kafka"]["environment"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"] and "KAFKA_ZOOKEEPER_CONNECT" not in kafka, "KRaft mode"
    advertised = {a.split("://")[0] for a in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    listeners = {a.split("://")[0] for a in kafka["KAFKA_LISTENERS"].split(",")}
    protocols = dict(p.split(":") for p in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert advertised <= listeners <= set(protocols)
    assert kafka["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners - advertised
    bootstrap = {compose_env(s)["KAFKA_BOOTSTRAP_SERVERS"] for n, s in router_services().items() if n != "partner-sim"}
    assert bootstrap == {"kafka:9092"} and "INTERNAL://kafka:9092" in kafka["KAFKA_ADVERTISED_LISTENERS"]


def test_compose_images_are_pinned_and_services_have_an_image_or_build() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, service in compose()["services"].items():
        assert "image" in service or "build" in service, f"service {name} has neither image nor build"
        image = service.get("image", "")
        tag = image.rpartition(":")[2] if ":" in image else ""
        assert tag and tag != "latest" and any(ch.isdigit() for ch in tag), f"service {name}: pin {image!r} by version"
    assert {s["image"] for s in router_services().values()} == {f"event-router:{version}"}
    assert next(i for i in kustomization()["images"] if i["name"] == "event-router")["newTag"] == version


def test_compose_depends_on_targets_exist_and_are_healthchecked() -> None:
    services = compose()["services"]
    for name, service in services.items():
        depends = service.get("depends_on", {})
        for target in depends:
            assert target in services, f"service {name} depends on unknown service {target}"
            condition = depends[target].get("condition") if isinstance(depends, dict) else None
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy; it has no check"
    for name in ("kafka", "schema-registry", "redis", *router_services()):
        assert "healthcheck" in services[name], f"service {name} has no healthcheck"
    for worker in ("route", "deliver"):
        assert {"kafka", "redis", "schema-registry"} <= set(services[worker]["depends_on"])


def test_compose_route_has_two_replicas_sharing_the_partitions() -> None:
    route = compose()["services"]["route"]
    assert route["deploy"]["replicas"] == 2
    assert "container_name" not in route and "ports" not in route, "replicas cannot share a name or a host port"
    for name, service in router_services().items():
        if name != "partner-sim":
            assert int(compose_env(service)["ROUTER_TOPIC_PARTITIONS"]) == PARTITIONS >= route["deploy"]["replicas"]
    assert compose_env(route)["ROUTER_ROUTE_GROUP"] == WORKERS["route"]
    deliver = compose()["services"]["deliver"]["command"]
    assert deliver[deliver.index("--group") + 1] == WORKERS["deliver"]


def metrics_endpoints() -> dict[str, int]:
    """Compose service -> port of its /metrics: the HTTP port, or ROUTER_METRICS_PORT for the workers."""
    out = {}
    for name, service in router_services().items():
        env = compose_env(service)
        command = service["command"]
        if "ROUTER_METRICS_PORT" in env:
            out[name] = int(env["ROUTER_METRICS_PORT"])
        elif command[0] in ("gateway", "admin"):
            out[name] = int(command[command.index("--port") + 1])
    return out


def test_prometheus_scrapes_every_metrics_endpoint() -> None:
    endpoints = metrics_endpoints()
    assert set(endpoints) == {"gateway", "route", "deliver", "admin", "partner-sim"}
    assert endpoints["route"] == endpoints["deliver"] == endpoints["partner-sim"] == METRICS_PORT
    scraped: set[Any] = set()
    for job in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs", []):
            scraped.update(tuple(t.rsplit(":", 1)) for t in static["targets"])
        for dns in job.get("dns_sd_configs", []):
            scraped.update((n, str(dns["port"])) for n in dns["names"])
    missing = sorted(f"{n}:{p}" for n, p in endpoints.items() if (n, str(p)) not in scraped)
    assert not missing, f"deploy/prometheus.yml does not scrape {missing}"
    volumes = compose()["services"]["prometheus"]["volumes"]
    assert any(v.startswith("./deploy/prometheus.yml:/etc/prometheus/prometheus.yml") for v in volumes)


def test_env_example_holds_every_secret_the_specs_name() -> None:
    example = read_env_file(ENV_EXAMPLE)
    # Partner endpoints are in the compose environment (not secret); their credentials are here.
    endpoints = set(compose()["services"]["deliver"]["environment"])
    wanted = spec_env_refs(ROOT / "sources") | (spec_env_refs(ROOT / "integrations") - endpoints)
    wanted |= {"ROUTER_ADMIN_TOKEN", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"}
    assert not sorted(wanted - set(example)), f"deploy/.env.example lacks {sorted(wanted - set(example))}"


def test_delivery_workers_start_with_the_compose_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from consumers.deliver.cli import targets_for
    from router.spec.load import load_catalog

    for name in spec_env_refs(ROOT / "integrations"):
        monkeypatch.delenv(name, raising=False)
    for name, value in compose_env(compose()["services"]["deliver"]).items():
        monkeypatch.setenv(name, value)
    catalog = load_catalog(ROOT / "integrations", ROOT / "schemas" / "avro")
    assert targets_for(catalog, None)


# ---- the image ----------------------------------------------------------------------------------


def test_dockerfile_builds_a_non_root_router_image_with_the_specs() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+$", text, re.M)  # Python 3.11, a patch release
    assert 'ENTRYPOINT ["router"]' in text
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and not user[-1].startswith(("root", "0")), "the image must run as a non-root user"
    for folder in ("integrations/", "schemas/avro/", "sources/"):
        assert re.search(rf"^COPY {re.escape(folder)} ", text, re.M), f"the image lacks {folder}"
    shipped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in (pattern.rstrip("*") for pattern in shipped):  # the wheel is built from what is copied
        assert re.search(rf"^COPY {package}/ {package}/$", text, re.M), f"the image lacks the {package} package"
    assert "[embedded]" not in text and "[test]" not in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests", "deploy", "**/.env"} <= set(ignored)


def test_compose_publishes_on_loopback_unless_the_operator_opts_in() -> None:
    """Every published port binds 127.0.0.1 by default (ROUTER_PUBLISH_ADDRESS opts in); Redis,
    which has no password in compose, is not published at all."""
    services = compose()["services"]
    published = {name: s.get("ports", []) for name, s in services.items()}
    assert published.pop("redis") == [], "Redis must not be published"
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("${ROUTER_PUBLISH_ADDRESS:-127.0.0.1}:"), f"{name} publishes {port} widely"


def test_compose_gives_every_router_kind_time_to_drain_as_kubernetes_does() -> None:
    """Docker's default stop grace is 10 s; each kind gets what its k8s Deployment gets."""
    services = compose()["services"]
    for kind in KINDS:
        grace = services[kind].get("stop_grace_period")
        assert grace, f"{kind} has no stop_grace_period (Docker kills it after 10 s)"
        deployment = of_kind("Deployment")[kind]
        k8s_grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert parse_duration(str(grace)) >= k8s_grace / 2, f"{kind}: {grace} against {k8s_grace} s in k8s"


def test_the_example_env_file_is_refused_and_new_env_writes_one_that_starts(tmp_path: Path) -> None:
    """The committed placeholders are public: a gateway and an admin page started with only them
    refuse to run; deploy/new-env.py writes fresh secrets that they accept."""
    import importlib.util

    from producers.webhooks.devsecrets import check_dev_secrets
    from router.errors import ConfigError
    from router.settings import Secret
    from router.spec.sources import load_sources
    from services.admin.auth import require_strong_token

    example = read_env_file(ENV_EXAMPLE)
    with pytest.raises(ConfigError, match="published secret"):
        check_dev_secrets(load_sources(ROOT / "sources", example), allowed=False)
    with pytest.raises(ConfigError):
        require_strong_token(Secret(example["ROUTER_ADMIN_TOKEN"]))

    spec = importlib.util.spec_from_file_location("new_env", ROOT / "deploy" / "new-env.py")
    assert spec is not None and spec.loader is not None
    new_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(new_env)
    written = tmp_path / ".env"
    written.write_text(new_env.render(ENV_EXAMPLE.read_text()))
    fresh = read_env_file(written)
    assert set(fresh) == set(example)
    check_dev_secrets(load_sources(ROOT / "sources", fresh), allowed=False)
    require_strong_token(Secret(fresh["ROUTER_ADMIN_TOKEN"]))
    assert fresh["CRM_CLIENT_ID"] == example["CRM_CLIENT_ID"], "partner credentials for the simulator are kept"


def test_the_image_installs_exact_versions_of_every_runtime_dependency() -> None:
    """The Dockerfile builds from constraints.txt on a pinned base, and the constraints pin every
    runtime dependency of pyproject.toml to one version inside its declared range."""
    from packaging.requirements import Requirement

    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--constraint constraints.txt" in dockerfile
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)
    assert base and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base.group(1)), "a patch-release base image"
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not name==version"
            pins[name.lower().replace("_", "-")] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for raw in project["dependencies"]:
        req = Requirement(raw)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"constraints.txt does not pin {req.name}"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"{req.name}=={pins[name]} is outside {req.specifier}"

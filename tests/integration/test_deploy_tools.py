"""The deployment files through the tools that read them, where those tools exist here
(``docker compose config``, ``kustomize build``); otherwise each test is skipped and says why —
the file-by-file checks in tests/unit/test_deploy_manifests.py cover them without the tools."""

from __future__ import annotations

import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from tests.unit.test_deploy_manifests import BASE, COMPOSE, GENERATED, K8S_VERSIONS, ROOT, walk


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    probe = None
    if docker:
        probe = subprocess.run([docker, "compose", "version"], check=False, capture_output=True, text=True)
    if probe is None or probe.returncode != 0:
        reason = "no docker CLI" if probe is None else ((probe.stderr or probe.stdout).strip() or "no output")
        reason = reason.splitlines()[0]
        pytest.skip(f"Docker Compose is not installed here ({reason}); "
                    "the unit tier checks the file against the Compose schema")
    assert docker is not None
    done = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "-q"], check=False, capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_kustomize_builds_the_base_and_the_output_validates() -> None:
    if tool := shutil.which("kustomize"):
        argv = [tool, "build", str(BASE)]
    elif tool := shutil.which("kubectl"):
        argv = [tool, "kustomize", str(BASE)]
    else:
        pytest.skip("neither kustomize nor kubectl is installed here; the unit tier checks the base "
                    "file by file")
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rendered = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    configmaps = {o["metadata"]["name"] for o in rendered if o["kind"] == "ConfigMap"}
    for name in (*GENERATED, "router-config"):
        assert any(c.startswith(f"{name}-") for c in configmaps), f"kustomize generated no {name}"
    for obj in rendered:
        if obj["kind"] == "Deployment":
            refs = {n["name"] for n in walk(obj) if "name" in n and str(n["name"]).startswith("router-")}
            unresolved = refs & {*GENERATED, "router-config"}
            assert not unresolved, f"{obj['metadata']['name']} still names {unresolved} without the hash suffix"
        if obj["kind"] != "ScaledObject":
            kubernetes_validate.validate(obj, K8S_VERSIONS[-1], strict=True)

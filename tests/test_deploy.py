"""The deployment files, checked without a Docker engine: lint, schema, and agreement with the code."""

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from benchmarks.harness import SERVE_COMMAND
from tests.helpers import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()
COMPOSE_FILES = ["docker-compose.yml", "docker-compose.gpu.yml"]


def tool(name: str) -> str:
    """A console script of the test extras: beside this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / name
    path = str(beside) if beside.exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: it comes with the test extras")
    return path


def test_hadolint_reports_nothing():
    result = subprocess.run(
        [tool("hadolint"), "--failure-threshold", "warning", "Dockerfile"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_compose_files_match_the_compose_spec():
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", *COMPOSE_FILES],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def instruction(name: str) -> list[str]:
    lines = DOCKERFILE.replace("\\\n", " ").splitlines()
    return [line[len(name) :].strip() for line in lines if line.startswith(name + " ")]


def test_cmd_is_the_command_the_end_to_end_tests_start():
    [cmd] = instruction("CMD")
    assert json.loads(cmd) == [SERVE_COMMAND]


def test_healthcheck_is_exec_form_against_healthz():
    [check] = instruction("HEALTHCHECK")
    exec_form = json.loads(check[check.index("CMD") + 3 :])
    assert isinstance(exec_form, list) and "/healthz" in " ".join(exec_form)


def test_runs_as_a_numeric_non_root_user():
    users = instruction("USER")
    assert users and re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1])


def test_image_dependencies_are_the_projects_own():
    """Every install is of the project's own pyproject.toml: its dependencies (through the
    project without its code), then the project alone."""
    commands = [command.strip() for run in instruction("RUN") for command in run.split("&&")]
    installs = [command for command in commands if "pip install" in command]
    assert installs == [
        "pip install .",
        'pip install ".[${TF_VARIANT}]"',
        *["pip install --no-deps ."] * 2,
    ]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert {"cpu", "gpu", "train"} <= set(project["optional-dependencies"])
    serving = " ".join(project["dependencies"])
    assert "tensorflow" not in serving and "keras" not in serving


def test_every_requirement_has_bounds_that_admit_what_is_installed():
    """Every requirement of pyproject.toml (the build's, the dependencies, each extra) has a
    lower and an upper bound, and those installed here are within them (pip builds in an
    environment of its own: the build's are not compared with this one's)."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    project = pyproject["project"]
    build = pyproject["build-system"]["requires"]
    listed = [*build, *project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        listed += extra
    for line in listed:
        requirement = Requirement(line)
        if requirement.name == project["name"]:
            continue  # an extra naming others of the project's own
        operators = {spec.operator for spec in requirement.specifier}
        assert operators & {">=", ">", "~=", "=="}, f"{line}: no lower bound"
        assert operators & {"<", "<=", "~=", "=="}, f"{line}: no upper bound"
        if line not in build and (requirement.marker is None or requirement.marker.evaluate()):
            try:
                installed = version(requirement.name)
            except PackageNotFoundError:
                continue  # an extra not installed here (gpu)
            assert requirement.specifier.contains(installed, prereleases=True), (
                f"{line}: {installed} is installed"
            )


def stage_parents() -> dict[str, str]:
    """Each stage of the Dockerfile and the image or stage it starts FROM."""
    lines = [line.split() for line in DOCKERFILE.splitlines() if line.startswith("FROM ")]
    return {words[-1]: words[1] for words in lines}


def ancestry(stage: str) -> list[str]:
    parents, chain = stage_parents(), [stage]
    while chain[-1] in parents:
        chain.append(parents[chain[-1]])
    return chain


def test_the_default_target_serves_without_tensorflow_and_compose_builds_both():
    stages = list(stage_parents())
    assert stages[-1] == "serve" and "train" in stages
    serve_stage = DOCKERFILE.split("AS serve\n")[1]
    copies = [line.split()[1:] for line in serve_stage.splitlines() if line.startswith("COPY ")]
    copied = [
        (words[0].removeprefix("--from="), next(w for w in words if not w.startswith("--")))
        for words in copies
    ]
    assert dict((path, stage) for stage, path in copied).keys() == {"/opt/venv", "/models"}
    for stage, _ in copied:  # nothing of the trainer's environment reaches the serving image
        assert "build-train" not in ancestry(stage), stage
    [venv] = [stage for stage, path in copied if path == "/opt/venv"]
    assert "build-serve" in ancestry(venv)
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert compose["api"]["build"]["target"] == "${API_TARGET:-serve}"
    assert compose["trainer"]["build"]["target"] == "train"
    gpu = yaml.safe_load((REPO / "docker-compose.gpu.yml").read_text())["services"]
    assert gpu["api"]["build"]["target"] == "train"
    assert any(line.startswith("ARG TF_VARIANT=cpu") for line in DOCKERFILE.splitlines())
    assert not list(REPO.glob("requirements*.txt"))


def test_dockerignore_keeps_data_caches_tests_and_venvs_out():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".venv", "tests", "data", ".pytest_cache", "**/__pycache__"} <= ignored


def compose(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def test_compose_api_and_trainer_share_the_models_volume_seeded_once():
    services = compose("docker-compose.yml")["services"]
    api, trainer, seed = services["api"], services["trainer"], services["models-init"]
    store = {"type": "volume", "source": "models", "target": "/models", "volume": {"nocopy": True}}
    assert store in api["volumes"] and store in trainer["volumes"]
    # One container seeds a new volume, with the Kubernetes initContainer's script, from the
    # image's models (MODELS_DIR) into the volume; the API and the trainer wait for it.
    script = "./deploy/k8s/base/seed_models.py"
    assert (REPO / script).is_file()
    [mount] = [v for v in seed["volumes"] if v.startswith(script + ":")]
    assert seed["command"] == ["python", mount.split(":")[1], "/models", "/store"]
    assert "models:/store" in seed["volumes"] and seed["image"] == api["image"]
    assert "build" not in seed and seed["pull_policy"] == "never" and seed["restart"] == "no"
    assert re.search(r"install -d -o app -g app /store\b", DOCKERFILE)  # the app may write it
    for waits in (api, trainer):
        assert waits["depends_on"]["models-init"]["condition"] == "service_completed_successfully"
    assert api["ports"] and api["healthcheck"]["test"] and api["restart"] == "unless-stopped"
    assert trainer["profiles"] == ["train"]
    assert trainer["command"][:3] == ["python", "-m", "training.retrain"]
    grace = int(api["stop_grace_period"].rstrip("s"))
    assert grace > int(api["environment"]["GRACEFUL_TIMEOUT"])
    assert services["nginx"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_compose_trainer_command_is_a_valid_retrain_command():
    from training import retrain, train

    command = compose("docker-compose.yml")["services"]["trainer"]["command"]
    argv = [re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", arg) for arg in command[3:]]
    p = retrain.parser()
    config = train.config_from(p, train.parse_args(p, argv), argv)
    assert config.data_dir == Path("/data") and config.models_dir == Path("/models")
    assert config.epochs == train.RECIPES["shipped"]["epochs"]  # retrains with the shipped recipe


def test_compose_api_writes_feedback_and_the_trainer_reads_it():
    """The API writes FEEDBACK_DIR on a volume the trainer reads as --extra-data, read-only."""
    services = compose("docker-compose.yml")["services"]
    api, trainer = services["api"], services["trainer"]
    folder = api["environment"]["FEEDBACK_DIR"]
    assert f"feedback:{folder}" in api["volumes"]
    assert f"feedback:{folder}:ro" in trainer["volumes"]
    assert api["environment"]["CAPTURE_RATE"] == "${CAPTURE_RATE:-0}"  # off unless asked for
    command = trainer["command"]
    extra = command[command.index("--extra-data") + 1]
    model = command[command.index("--model-name") + 1]
    assert extra == f"{folder}/{model}"
    # the image makes the folder its user owns (a new named volume takes its owner), and
    # leaves FEEDBACK_DIR unset: feedback is off unless a deployment asks for it
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(rf"install -d -o app -g app( /\w+)* {folder}\b", dockerfile)
    assert "FEEDBACK_DIR" not in "".join(
        re.findall(r"^ENV .*?(?:\n\S|\Z)", dockerfile, re.S | re.M)
    )


def test_gpu_reservation_is_an_override():
    base = compose("docker-compose.yml")["services"]["api"]
    assert "deploy" not in base  # the base file starts on a host without a GPU
    gpu = compose("docker-compose.gpu.yml")["services"]["api"]
    [device] = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["build"]["args"]["TF_VARIANT"] == "gpu"


def seconds(duration: str) -> int:
    """A compose duration such as `60s` or `4m`, in seconds."""
    number, unit = re.fullmatch(r"(\d+)([sm])", duration).groups()
    return int(number) * (60 if unit == "m" else 1)


def test_the_gpu_api_has_the_start_up_time_kubernetes_gives_it():
    """TensorFlow's import and CUDA's start come before the model load on a GPU: the GPU
    overlay gives the start 240 s. compose's API must not be marked unhealthy sooner, or
    `up --wait` fails and nginx (waiting for a healthy API) never starts."""
    k8s = REPO / "deploy" / "k8s"
    probes = []
    for path in (
        k8s / "base" / "deployment.yaml",
        k8s / "overlays" / "gpu" / "deployment-gpu.yaml",
    ):
        [server] = yaml.safe_load(path.read_text())["spec"]["template"]["spec"]["containers"]
        probes.append(server["startupProbe"])
    probe = {**probes[0], **probes[1]}  # the overlay's patch over the base's probe
    allowed = probe["periodSeconds"] * probe["failureThreshold"]
    base = compose("docker-compose.yml")["services"]["api"]["healthcheck"]
    check = {**base, **compose("docker-compose.gpu.yml")["services"]["api"].get("healthcheck", {})}
    assert check["test"] == base["test"]  # the same readiness check, more time
    assert seconds(check["start_period"]) >= allowed


def test_grpc_is_published_by_the_image_compose_and_nginx():
    from service.settings import Settings

    port = Settings.model_fields["grpc_port"].default
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(rf"^EXPOSE 8000 {port}$", dockerfile, flags=re.M)
    assert f"GRPC_PORT={port}" in dockerfile
    services = compose("docker-compose.yml")["services"]
    assert services["api"]["environment"]["GRPC_PORT"] == str(port)
    nginx = (REPO / "deploy" / "nginx.conf").read_text()
    [listen] = re.findall(r"listen (\d+) http2;", nginx)
    assert f"${{GRPC_PORT:-{port}}}:{listen}" in services["nginx"]["ports"]
    assert f"set $api_grpc_upstream api:{port};" in nginx and "grpc_pass grpc://" in nginx

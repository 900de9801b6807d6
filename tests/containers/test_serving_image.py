"""The serving image run as a hardened platform runs it: `docker run --read-only --tmpfs /tmp`
as the image's own non-root user, published on loopback only.

It must become healthy by its own HEALTHCHECK, answer photos as the repository's model does,
write only JSON lines with no complaint about permissions or read-only paths (nor
telemetry), hold neither TensorFlow nor Keras files, and on `docker stop` finish the
requests in flight and exit 0 well before Docker would kill it.
"""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
import uuid

import numpy as np
import pytest
import requests
from urllib3.filepost import encode_multipart_formdata

from benchmarks.harness import free_port
from classifier.predictor import load_predictor
from classifier.preprocess import decode_image
from classifier.runtimes import RuntimeOptions
from classifier.store import ModelStore
from tests.helpers import SHIPPED_MODELS, jpeg_bytes

pytestmark = pytest.mark.timeout(900)

MODEL = "cats_vs_dogs"
HEALTHY_WITHIN_S = 120
COMPLAINTS = ("permission denied", "read-only file system", "errno 13", "errno 30", "telemetry")
# Drain: requests of many images each, in flight when `docker stop` is sent; together within
# the service's queue (QUEUE_CAPACITY, 256 images), or it would answer 503 queue_full.
DRAIN_CLIENTS = 8
DRAIN_IMAGES = 24


class Container:
    def __init__(self, engine, image: str, figures: dict) -> None:
        self.engine = engine
        self.name = f"image-classifier-test-serve-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        started = time.monotonic()
        engine.docker(
            "run", "--detach", "--name", self.name, "--read-only", "--tmpfs", "/tmp",
            "--publish", f"127.0.0.1:{self.port}:8000", image,
        )  # fmt: skip
        try:  # a container that never became healthy goes too: no fixture will remove it
            ready = self.wait_healthy(started)
        except BaseException:
            self.remove()
            raise
        healthy = time.monotonic() - started
        figures["serving container: ready (/readyz)"] = f"{ready or healthy:.1f} s after docker run"
        figures["serving container: healthy (HEALTHCHECK)"] = f"{healthy:.1f} s after docker run"

    def wait_healthy(self, started: float) -> float | None:
        """Until the HEALTHCHECK says healthy; the seconds /readyz took to answer, if seen."""
        ready = None
        deadline = started + HEALTHY_WITHIN_S
        while (health := self.inspect("{{.State.Health.Status}}")) != "healthy":
            if health == "unhealthy" or self.inspect("{{.State.Running}}") != "true":
                raise AssertionError(f"container {health}:\n{self.logs()[-5000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not healthy in {HEALTHY_WITHIN_S} s:\n{self.logs()[-5000:]}")
            if ready is None and self.answers("/readyz"):
                ready = time.monotonic() - started
            time.sleep(0.25)
        return ready

    def inspect(self, template: str) -> str:
        return self.engine.docker("inspect", "--format", template, self.name).stdout.strip()

    def answers(self, path: str) -> bool:
        try:
            return requests.get(self.url + path, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def logs(self) -> str:
        result = self.engine.docker("logs", self.name)
        return result.stdout + result.stderr

    def remove(self) -> None:
        self.engine.docker("rm", "--force", "--volumes", self.name, check=False)


@pytest.fixture(scope="module")
def serving(engine, images, figures):
    container = Container(engine, images.serve, figures)
    yield container
    container.remove()


class _UnhealthyEngine:
    """Answers `docker` as an engine whose container turns unhealthy; notes every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def docker(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        self.calls.append(args)
        out = {"inspect": "unhealthy"}.get(args[0], "")
        return subprocess.CompletedProcess(["docker", *args], 0, out, "")


def test_a_container_that_never_becomes_healthy_is_removed():
    """The serving fixture only removes a container it got: one that failed to start is
    removed by Container itself (no engine needed)."""
    engine = _UnhealthyEngine()
    with pytest.raises(AssertionError, match="container unhealthy"):
        Container(engine, "image-classifier:test", {})
    [run] = [call for call in engine.calls if call[0] == "run"]
    name = run[run.index("--name") + 1]
    assert engine.calls[-1] == ("rm", "--force", "--volumes", name)


def test_runs_read_only_as_the_images_non_root_user(serving):
    assert serving.inspect("{{.HostConfig.ReadonlyRootfs}}") == "true"
    user = serving.inspect("{{.Config.User}}")
    assert user and not user.startswith("0")
    ids = serving.engine.docker("exec", serving.name, "id", "-u").stdout.strip()
    assert ids == user.split(":")[0] != "0"
    denied = serving.engine.docker("exec", serving.name, "touch", "/app/x", check=False)
    assert denied.returncode != 0


def test_answers_a_cat_and_a_dog_photo_as_the_repositorys_model(serving, shared_data):
    photos = [sorted((shared_data / "validation" / c).glob("*.jpg"))[0] for c in ("cats", "dogs")]
    answers = []
    for photo in photos:
        response = requests.post(
            serving.url + "/predict", files={"image": (photo.name, photo.read_bytes())}, timeout=30
        )
        assert response.status_code == 200, response.text
        answers.append(response.json())
    version = answers[0]["model"]["version"]
    # The same version from the repository's own files, on ONNX Runtime in float32 (the
    # container may serve bfloat16 through OpenVINO, within its parity tolerance).
    local = load_predictor(ModelStore(SHIPPED_MODELS), MODEL, version, RuntimeOptions("onnx"))
    for photo, answer in zip(photos, answers, strict=True):
        [prediction] = answer["predictions"]
        pixels = decode_image(photo.read_bytes(), local.spec)
        expected = local.to_predictions(local.predict(np.stack([pixels])))[0]
        assert prediction["label"] == expected.label
        for name, probability in expected.probabilities.items():
            assert prediction["probabilities"][name] == pytest.approx(probability, abs=0.02)


def test_every_log_line_is_json_without_complaints(serving):
    lines = [line for line in serving.logs().splitlines() if line.strip()]
    assert lines
    for line in lines:
        record = json.loads(line)  # raises on any line that is not JSON
        assert isinstance(record, dict) and "message" in record, line
        assert not [c for c in COMPLAINTS if c in line.lower()], line
    assert any("loaded, checked and warmed up" in line for line in lines)


def test_holds_no_tensorflow_and_a_serving_copy_both_runtimes_serve(engine, images):
    """The trimmed environment (Dockerfile, venv-serve) still runs ONNX Runtime and OpenVINO
    (whichever this host's `auto` picks, the other one too), on every shipped version."""
    script = (
        "import importlib.util, pathlib, sys\n"
        "import numpy as np\n"
        "from classifier.predictor import load_predictor\n"
        "from classifier.runtimes import RuntimeOptions\n"
        "from classifier.store import ModelStore\n"
        "assert importlib.util.find_spec('tensorflow') is None, 'tensorflow'\n"
        "assert importlib.util.find_spec('keras') is None, 'keras'\n"
        "assert not list(pathlib.Path('/models').rglob('model.keras')), 'model.keras'\n"
        "store = ModelStore('/models')\n"
        "for name in store.model_names():\n"
        "    for version in store.versions(name):\n"
        "        for runtime in ('onnx', 'openvino'):\n"
        "            p = load_predictor(store, name, version, RuntimeOptions(runtime, precision='fp32'))\n"
        "            probs = p.predict(np.zeros((2, *p.spec.shape), np.uint8))\n"
        "            assert probs.shape == (2, len(p.class_names)), probs.shape\n"
        "            print(name, version, p.runtime.name)\n"
    )
    result = engine.docker(
        "run", "--rm", "--read-only", "--tmpfs", "/tmp", images.serve, "python", "-c", script
    )  # fmt: skip
    served = result.stdout.split("\n")
    assert f"{MODEL} " in result.stdout
    assert {line.split()[-1] for line in served if line} == {"onnx", "openvino"}


@pytest.mark.parametrize("cpus", ["1", "0.5"])
def test_a_cpu_limit_is_counted_as_the_containers_cores(engine, images, cpus):
    """`docker run --cpus` is a cgroup quota, not an affinity: the service counts it, so a
    limited container runs one worker with one model thread, not a share of the host's."""
    script = (
        "from classifier import hardware; from service.settings import load; "
        "s = load(); print(hardware.cores(), s.workers, s.worker_threads)"
    )
    result = engine.docker(
        "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--cpus", cpus, images.serve,
        "python", "-c", script,
    )  # fmt: skip
    assert result.stdout.split() == ["1", "1", "1"], result.stdout + result.stderr


class _Upload(io.BytesIO):
    """A request body that tells when the client has sent all of it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.sent = threading.Event()

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        if not chunk:
            self.sent.set()
        return chunk


def test_docker_stop_drains_the_requests_in_flight_and_exits_0(serving, figures):
    """Requests of many images each are in flight when `docker stop` is sent: every one is
    answered 200, and gunicorn exits 0 (a drain, not Docker's kill after its timeout)."""
    fields = [("image", (f"{i}.jpg", jpeg_bytes((640, 480), seed=i))) for i in range(DRAIN_IMAGES)]
    data, content_type = encode_multipart_formdata(fields)
    uploads = [_Upload(data) for _ in range(DRAIN_CLIENTS)]
    results: list[tuple[float, int | str]] = []
    lock = threading.Lock()

    def client(upload: _Upload) -> None:
        try:
            status = requests.post(
                serving.url + "/predict", data=upload, timeout=120,
                headers={"Content-Type": content_type},
            ).status_code  # fmt: skip
        except requests.RequestException as exc:
            status = type(exc).__name__
        upload.sent.set()
        with lock:
            results.append((time.monotonic(), status))

    threads = [threading.Thread(target=client, args=(upload,)) for upload in uploads]
    for thread in threads:
        thread.start()
    # A body of this size is sent whole only once a worker's thread reads it: every request
    # is then in flight, not waiting in the listen queue, which a stop would drop.
    deadline = time.monotonic() + 60
    for upload in uploads:
        upload.sent.wait(max(0.0, deadline - time.monotonic()))
    stopped = time.monotonic()
    stop = serving.engine.docker("stop", "--time", "60", serving.name, check=False)
    stop_seconds = time.monotonic() - stopped
    for thread in threads:
        thread.join(150)
    statuses = [status for _, status in results]
    assert statuses == [200] * DRAIN_CLIENTS, statuses
    assert any(done > stopped for done, _ in results), "all answered before docker stop"
    assert stop.returncode == 0, stop.stderr
    assert serving.inspect("{{.State.ExitCode}}") == "0"
    assert stop_seconds < 30, f"docker stop took {stop_seconds:.1f} s"
    late = sum(done > stopped for done, _ in results)
    figures["docker stop"] = (
        f"{stop_seconds:.1f} s, {late} of {DRAIN_CLIENTS} requests in flight answered 200"
    )

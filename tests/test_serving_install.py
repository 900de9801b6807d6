"""The plain install serves without TensorFlow: a fresh venv with `pip install .` (no extra)
serves the shipped model, and its worker stays small."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import tritonclient.grpc as triton

from benchmarks.harness import free_port
from tests.helpers import REPO, SHIPPED_MODELS, jpeg_bytes

pytestmark = pytest.mark.e2e

# No TensorFlow (it alone adds about 680 MB): ONNX Runtime's two sessions (lanes), every batch
# size warmed up on both lanes at once, and one request measured 420 MB; OpenVINO bf16 (one
# lane) about 300-350.
RSS_LIMIT_MB = 520


@pytest.fixture(scope="module")
def serving_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("serving") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, str(REPO)], check=True, timeout=600)
    return venv


def installed(venv: Path) -> set[str]:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {line.split("==")[0].lower() for line in out.splitlines()}


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_the_plain_install_has_no_tensorflow_and_serves_small(serving_venv, tmp_path):
    packages = installed(serving_venv)
    assert not {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx"} & packages
    port, grpc_port = free_port(), free_port()
    env = {
        "PATH": f"{serving_venv / 'bin'}:{os.environ['PATH']}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "GRPC_PORT": str(grpc_port),
        "MODELS_DIR": str(SHIPPED_MODELS),
        "MODEL_POLL_SECONDS": "0",
        # One worker, measured below: the default (0) is a worker per two cores, so two or
        # more on a host of four cores or more, and `[worker] = ...` would not unpack.
        "WEB_CONCURRENCY": "1",
        "HOME": str(tmp_path),
    }
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [str(serving_venv / "bin" / "classifier-serve")], cwd=tmp_path, env=env,
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # bound, still warming up
                pass
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            time.sleep(0.5)
        answer = requests.post(
            f"{url}/predict", data=jpeg_bytes(), headers={"Content-Type": "image/jpeg"}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        with triton.InferenceServerClient(f"127.0.0.1:{grpc_port}") as grpc_client:
            assert grpc_client.is_model_ready("cats_vs_dogs")  # the installed proto descriptor
        runtime = requests.get(f"{url}/v1/models/cats_vs_dogs", timeout=10).json()["runtime"]
        assert runtime["name"] in ("onnx", "openvino")
        [worker] = worker_pids(server.pid)
        maps = Path(f"/proc/{worker}/maps").read_text()
        assert "site-packages/tensorflow/" not in maps  # (OpenVINO has a TF model reader)
        print(f"worker RSS {rss_mb(worker):.0f} MB, runtime {runtime}")
        assert rss_mb(worker) <= RSS_LIMIT_MB, f"worker RSS {rss_mb(worker):.0f} MB"
    finally:
        server.terminate()
        server.wait(60)
        log.close()


@pytest.mark.parametrize("tool", ["train", "retrain", "evaluate", "model_card"])
def test_training_without_its_libraries_says_what_to_install(serving_venv, tmp_path, tool):
    """The serving install has no TensorFlow: training's command lines say so in one line,
    exit 2, no traceback."""
    done = subprocess.run(
        [str(serving_venv / "bin" / "python"), "-m", f"training.{tool}", "--help"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("error: training needs tensorflow") and "make train-setup" in line

"""Settings: one typed declaration, read from the environment, bad values refused by name."""

import subprocess
import sys
from pathlib import Path

import pytest

from classifier import hardware
from classifier.runtimes import RuntimeOptions
from service.http.app import create_app
from service.settings import Settings, SettingsError, load
from tests.helpers import REPO, app_config

SERVE = str(Path(sys.executable).parent / "classifier-serve")
GUNICORN = str(Path(sys.executable).parent / "gunicorn")


def test_environment_is_parsed_into_typed_values(monkeypatch):
    for name, value in {
        "MAX_BATCH_SIZE": "32",
        "BATCH_TIMEOUT_MS": "2.5",
        "MIXED_PRECISION": "yes",
        "RUNTIME": "onnx",
        "PORT": "9001",
        "MODEL_VERSION_POLICY": "latest:2",
        "LOG_LEVEL": "",  # empty is unset
    }.items():
        monkeypatch.setenv(name, value)
    settings = load()
    assert (settings.max_batch_size, settings.batch_timeout_ms) == (32, 2.5)
    assert (settings.mixed_precision, settings.runtime, settings.port) == (True, "onnx", 9001)
    assert settings.policy.latest == 2
    assert settings.log_level == "info"


def test_overrides_beat_the_environment(monkeypatch):
    monkeypatch.setenv("MAX_BATCH_SIZE", "32")
    assert load({"MAX_BATCH_SIZE": 8}).max_batch_size == 8


BAD = [
    ("PORT", "abc"),
    ("PORT", "70000"),
    ("MAX_BATCH_SIZE", "0"),
    ("RUNTIME", "tpu"),
    ("DEVICE", "npu"),
    ("MIXED_PRECISION", "maybe"),
    ("INFERENCE_THREADS", "-1"),
    ("BATCH_TIMEOUT_MS", "-5"),
    ("REQUEST_DEADLINE_MS", "0"),
    ("REQUEST_DEADLINE_MS", "inf"),  # every predict was a 500 (OverflowError in its wait)
    ("REQUEST_DEADLINE_MS", "1e308"),
    ("MODEL_POLL_SECONDS", "inf"),  # the poller thread died at its first wait
    # gRPC's graceful stop thread died (OverflowError, a traceback on SIGTERM): no grace
    ("GRACEFUL_TIMEOUT", "10000000000"),
    # origins a browser never sends: before, taken, and no answer ever had CORS headers
    ("CORS_ORIGINS", "app.example"),
    ("CORS_ORIGINS", "https://ok.example, https://App.example"),
    ("CORS_ORIGINS", "https://app.example/ui"),
    ("CORS_ORIGINS", "https://app.example:443"),
    ("CORS_ORIGINS", "null"),
    # exempt paths that never match: before, taken, and the path silently needed a key
    ("API_KEY_EXEMPT_PATHS", "/healthz,readyz"),
    ("API_KEY_EXEMPT_PATHS", "/v2/*/ready"),
    ("MODEL_POLL_SECONDS", "soon"),
    ("MODEL_VERSION_POLICY", "newest"),
    ("MODEL_NAME", "../etc"),
    ("MAX_UPLOAD_BYTES", "0"),
    ("MAX_FORM_MEMORY_SIZE", "1024"),
    ("WEB_CONCURRENCY", "-1"),
    ("LOG_LEVEL", "loud"),
    ("PRECISION", "fp64"),
    ("RUNTIME", "tensorrt"),
    ("CAPTURE_RATE", "1.5"),
    ("CAPTURE_RATE", "-0.1"),
    ("CAPTURE_MAX_BYTES", "0"),
    ("CAPTURE_MAX_AGE_HOURS", "0"),
    ("DRIFT_WINDOW", "0"),
    ("DRIFT_PSI_THRESHOLD", "0"),
    ("VERSION_LABELS", "a:b=1"),  # /labels/a:b would be a :verb, no route
    ("VERSION_LABELS", "a/b=1"),
    ("MODEL_VERSION_POLICY", "specific:1_0"),
]


@pytest.mark.parametrize(("name", "value"), BAD)
def test_each_bad_setting_is_refused_with_its_name_and_value(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load()
    message = str(info.value)
    assert f"{name}={value!r}" in message and "\n" not in message


def test_settings_that_cannot_work_together_are_refused(models_dir):
    with pytest.raises(SettingsError, match="QUEUE_CAPACITY"):
        create_app(app_config(models_dir, QUEUE_CAPACITY=4, MAX_IMAGES_PER_REQUEST=8))


@pytest.mark.parametrize("batch_timeout_ms", ["10000", "inf"])
def test_a_batch_wait_as_long_as_the_deadline_is_refused(batch_timeout_ms):
    """A request alone waited for a batch past its deadline: 504, every time."""
    with pytest.raises(SettingsError, match=r"BATCH_TIMEOUT_MS .* less than REQUEST_DEADLINE_MS"):
        load({"BATCH_TIMEOUT_MS": batch_timeout_ms, "REQUEST_DEADLINE_MS": "10000"})
    assert load({"BATCH_TIMEOUT_MS": "9999", "REQUEST_DEADLINE_MS": "10000"}).batch_timeout_ms


def test_capture_needs_a_feedback_folder():
    with pytest.raises(SettingsError, match="CAPTURE_RATE needs FEEDBACK_DIR"):
        load({"CAPTURE_RATE": 0.1})
    assert load({"CAPTURE_RATE": 0.1, "FEEDBACK_DIR": "feedback"}).capture_rate == 0.1
    assert load().capture_rate == 0 and load().feedback_dir == ""  # off by default


def test_unknown_override_is_not_a_setting():
    with pytest.raises(SettingsError, match="QUEUE_SIZE"):
        load({"QUEUE_SIZE": 3})


@pytest.mark.parametrize(
    "command",
    [[SERVE], [GUNICORN, "-c", "service/gunicorn.conf.py", "service:create_app()"]],
    ids=["classifier-serve", "gunicorn"],
)
def test_a_bad_setting_stops_start_up_with_one_line(command):
    env = {"PATH": "/usr/bin:/bin", "PORT": "abc", "RUNTIME": "tpu"}
    result = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "PORT='abc'" in lines[0] and "RUNTIME='tpu'" in lines[0] and "'onnx'" in lines[0]


def test_serve_help_lists_every_setting():
    result = subprocess.run([SERVE, "--help"], capture_output=True, text=True, check=True)
    for name in Settings.model_fields:
        assert name.upper() in result.stdout


def test_serving_binds_loopback_unless_told_and_containers_say_so(monkeypatch):
    import yaml

    monkeypatch.delenv("HOST", raising=False)
    assert load().host == "127.0.0.1"
    assert "HOST=0.0.0.0" in (REPO / "Dockerfile").read_text()
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert compose["services"]["api"]["environment"]["HOST"] == "0.0.0.0"


@pytest.mark.parametrize(
    "host, bind",
    [("0.0.0.0", "0.0.0.0:8000"), ("::", "[::]:8000"), ("[::1]", "[::1]:8000"), ("fe80::1%eth0", "[fe80::1%eth0]:8000")],
)  # fmt: skip
def test_an_ipv6_host_is_bound_in_brackets(host, bind):
    """gunicorn read HOST=:: as ':::8000' ("'' is not a valid port number") and
    classifier-serve refused `[::]` as no address: no IPv6 at all."""
    assert Settings.with_overrides({"host": host}).address(8000) == bind


def test_bf16_where_the_cpu_lacks_it_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(hardware, "native_bf16", lambda flags=None: False)
    monkeypatch.setenv("PRECISION", "bf16")
    with pytest.raises(SettingsError, match="PRECISION=bf16: this CPU computes bf16 natively"):
        load()
    monkeypatch.setenv("PRECISION", "auto")
    assert load().precision == "auto"  # auto falls back to fp32 with a log line instead


def test_keras_without_tensorflow_installed_is_refused(monkeypatch):
    from classifier import runtimes

    monkeypatch.setattr(runtimes, "has_tensorflow", lambda: False)
    monkeypatch.setenv("RUNTIME", "keras")
    with pytest.raises(SettingsError, match="needs TensorFlow"):
        load()


def test_each_worker_takes_its_share_of_the_cores(models_dir, monkeypatch):
    """INFERENCE_THREADS=0 divides the cores among the workers: each taking them all would
    run more model threads than there are cores."""
    monkeypatch.setattr(hardware, "cores", lambda: 4)
    assert load({"WEB_CONCURRENCY": 1}).worker_threads == 4
    assert load().worker_threads == 2  # by default two workers on four cores
    assert load({"WEB_CONCURRENCY": 2}).worker_threads == 2
    assert load({"WEB_CONCURRENCY": 8}).worker_threads == 1  # at least one
    assert load({"WEB_CONCURRENCY": 2, "INFERENCE_THREADS": 3}).worker_threads == 3  # as asked
    options = load({"WEB_CONCURRENCY": 2, "RUNTIME": "onnx", "PRECISION": "fp32"}).runtime_options
    assert options == RuntimeOptions("onnx", precision="fp32", threads=2, lanes=0)
    app = create_app(app_config(models_dir, WEB_CONCURRENCY=2, RUNTIME="onnx"))
    runtime = app.extensions["loader"].registry.get("pets").predictor.runtime
    assert runtime.session.get_session_options().intra_op_num_threads == 2
    assert runtime.lanes == 2  # two threads: two lanes of one


def test_workers_by_default_one_per_two_cores_and_one_on_tensorflow(monkeypatch):
    """WEB_CONCURRENCY=0: one worker's request threads get about one core of Python, so a
    worker per two cores; TensorFlow (the auto path on a GPU) one, as it costs ~680 MB."""
    from classifier import runtimes

    monkeypatch.setattr(hardware, "cores", lambda: 16)
    monkeypatch.setattr(hardware, "gpu_count", lambda: 0)
    assert (load().workers, load().worker_threads) == (8, 2)
    assert load({"WEB_CONCURRENCY": 3}).workers == 3
    monkeypatch.setattr(hardware, "cores", lambda: 3)
    assert load().workers == 1
    monkeypatch.setattr(hardware, "cores", lambda: 16)
    monkeypatch.setattr(runtimes, "has_tensorflow", lambda: True)
    assert load({"RUNTIME": "keras"}).workers == 1
    assert load().workers == 8  # no GPU: the auto path runs a CPU runtime
    monkeypatch.setattr(hardware, "gpu_count", lambda: 1)
    assert load().workers == 1  # TensorFlow on the GPU
    assert load({"DEVICE": "cpu"}).workers == 8
    monkeypatch.setattr(runtimes, "has_tensorflow", lambda: False)
    assert load().workers == 8  # a GPU without TensorFlow: served on the CPU


def test_gunicorn_starts_the_workers_the_settings_resolve(tmp_path):
    """gunicorn.conf.py reads the resolved count, never WEB_CONCURRENCY's 0 as it stands."""
    script = (
        "import os, runpy; from service.settings import load; "
        "ns = runpy.run_path('service/gunicorn.conf.py'); "
        "print(ns['workers'], load().workers, os.environ['WEB_CONCURRENCY'])"
    )
    env = {"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    conf, settings, exported = out.stdout.split()
    assert conf == settings == exported and int(conf) >= 1  # workers divide by the same count

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from classifier import hardware, runtimes
from classifier.cpu_runtimes import OnnxRuntime, OpenVinoRuntime
from classifier.errors import ModelStoreError
from classifier.keras_runtime import KerasRuntime, configure_tensorflow
from classifier.metadata import MODEL_FILE, ONNX_FILE
from classifier.runtimes import BF16_TOLERANCE, RuntimeOptions, load_runtime
from classifier.store import ModelStore
from tests.helpers import publish_model


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ModelStore:
    root = tmp_path_factory.mktemp("runtimes")
    publish_model(root, "pets", image_size=64, seed=3)
    publish_model(root, "plain", image_size=64, seed=3, onnx=False)
    return ModelStore(root)


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)


def runtime(store: ModelStore, name: str = "pets", **options):
    metadata = store.check(name, 1)
    return load_runtime(store.model_dir(name) / "1", metadata, RuntimeOptions(**options))


def test_every_fp32_runtime_agrees_with_keras_within_1e_5(store, batch):
    keras_rt = runtime(store, runtime="keras")
    onnx_rt = runtime(store, runtime="onnx")
    openvino_rt = runtime(store, runtime="openvino", precision="fp32")
    assert isinstance(keras_rt, KerasRuntime) and isinstance(onnx_rt, OnnxRuntime)
    assert openvino_rt.precision == "fp32"
    reference = np.asarray(keras_rt.model.predict_on_batch(batch.astype("float32"))).reshape(-1)
    for rt in (keras_rt, onnx_rt, openvino_rt):
        out = rt(batch)
        assert out.shape == (8,) and out.dtype == np.float32
        assert np.abs(out - reference).max() <= 1e-5, rt.name


@pytest.mark.skipif(not hardware.native_bf16(), reason="this CPU has no native bf16")
def test_bf16_openvino_stays_within_its_tolerance_of_fp32(store, batch):
    bf16 = runtime(store, runtime="openvino", precision="bf16")
    assert bf16.precision == "bf16"
    reference = runtime(store, runtime="onnx")(batch)
    assert np.abs(bf16(batch) - reference).max() <= BF16_TOLERANCE


@pytest.mark.parametrize(
    ("bf16", "gpus", "has_onnx", "precision", "expected"),
    [
        (True, 0, True, "auto", ("openvino", "bf16")),
        (False, 0, True, "auto", ("onnx", "fp32")),
        (True, 0, True, "fp32", ("onnx", "fp32")),
        (True, 1, True, "auto", ("keras", "fp32")),
        (True, 0, False, "auto", ("keras", "fp32")),
    ],
)
def test_auto_picks_the_fastest_path_for_the_hardware(
    monkeypatch, bf16, gpus, has_onnx, precision, expected
):
    monkeypatch.setattr(hardware, "native_bf16", lambda flags=None: bf16)
    monkeypatch.setattr(hardware, "gpu_count", lambda: gpus)
    monkeypatch.setattr(runtimes.importlib.util, "find_spec", lambda name: object())
    assert runtimes.choose(RuntimeOptions(precision=precision), has_onnx) == expected


def test_auto_on_a_gpu_serves_a_copy_without_its_keras_file_on_the_cpu(monkeypatch, caplog):
    monkeypatch.setattr(hardware, "native_bf16", lambda flags=None: False)
    monkeypatch.setattr(hardware, "gpu_count", lambda: 1)
    monkeypatch.setattr(runtimes.importlib.util, "find_spec", lambda name: object())
    assert runtimes.choose(RuntimeOptions(), True, has_keras=False) == ("onnx", "fp32")
    assert "has no model.keras" in caplog.text


@pytest.fixture
def serving_copy(store, tmp_path) -> ModelStore:
    """The pets model as the serving image ships it: without its Keras file."""
    shutil.copytree(store.model_dir("pets"), tmp_path / "pets")
    (tmp_path / "pets" / "1" / MODEL_FILE).unlink()
    return ModelStore(tmp_path)


def test_a_serving_copy_is_served_from_its_onnx_file(serving_copy, batch, store):
    metadata = serving_copy.check("pets", 1)
    folder = serving_copy.model_dir("pets") / "1"
    auto = load_runtime(folder, metadata, RuntimeOptions())
    assert auto.name in ("onnx", "openvino")
    reference = runtime(store, runtime="onnx")(batch)
    assert (
        np.abs(load_runtime(folder, metadata, RuntimeOptions("onnx"))(batch) - reference).max() == 0
    )
    with pytest.raises(ModelStoreError, match=f"no {MODEL_FILE}.*RUNTIME=keras") as info:
        load_runtime(folder, metadata, RuntimeOptions("keras"))
    assert info.value.code == "model_load_failed"


def test_loading_and_running_writes_no_telemetry(store, tmp_path):
    """ONNX Runtime keeps a device id and an event cache under HOME unless told not to;
    OpenVINO's inference writes nothing. Both, in a fresh process with an empty HOME."""
    home = tmp_path / "home"
    home.mkdir()
    script = (
        "import numpy as np, sys\n"
        "from classifier.cpu_runtimes import OnnxRuntime, OpenVinoRuntime\n"
        "for rt in (OnnxRuntime(sys.argv[1]), OpenVinoRuntime(sys.argv[1], precision='fp32')):\n"
        "    rt(np.zeros((1, 64, 64, 3), np.uint8))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "ORT_"))}
    result = subprocess.run(
        [sys.executable, "-c", script, str(store.model_dir("pets") / "1" / ONNX_FILE)],
        env={**env, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "telemetry" not in result.stderr.lower()
    assert [str(p.relative_to(home)) for p in home.rglob("*")] == []


def test_auto_on_this_host_serves_what_choose_says(store):
    name, precision = runtimes.choose(RuntimeOptions(), has_onnx=True)
    rt = runtime(store, runtime="auto")
    assert (rt.name, rt.precision) == (name, precision)
    assert runtime(store, "plain", runtime="auto").name == "keras"


def test_a_bf16_path_that_fails_parity_falls_back_to_fp32(store, monkeypatch):
    monkeypatch.setattr(runtimes, "BF16_TOLERANCE", 0.0)  # no bf16 answer is that close
    monkeypatch.setattr(hardware, "native_bf16", lambda flags=None: True)
    rt = runtime(store, runtime="openvino", precision="bf16")
    if rt.name == "openvino":  # exactly equal answers: nothing to fall back from
        pytest.skip("bf16 gave exactly the fp32 answers")
    assert (rt.name, rt.precision) == ("onnx", "fp32") and "parity" in rt.note


def test_a_bf16_path_that_answers_otherwise_on_a_probe_falls_back_to_fp32(store, monkeypatch):
    """Close probabilities are not enough: a probe answered otherwise fails the check."""
    monkeypatch.setattr(hardware, "native_bf16", lambda flags=None: True)
    answers = iter([np.zeros(4, int), np.ones(4, int)])  # bf16's, then fp32's
    monkeypatch.setattr(runtimes, "answers", lambda outputs, threshold: next(answers))
    rt = runtime(store, runtime="openvino", precision="bf16")
    assert (rt.name, rt.precision) == ("onnx", "fp32")
    assert rt.note == "bf16 failed its parity check (another answer on a probe); fp32"


def test_the_answers_compared_are_a_sigmoids_threshold_and_a_softmaxs_top_class(store):
    metadata = store.check("pets", 1)
    threshold = metadata.decision_threshold
    sigmoid = runtimes.answers(np.array([0.2, metadata.threshold, 0.9]), threshold)
    assert list(sigmoid) == [0, 1, 1]
    two_classes = np.array([[0.8, 0.2], [1 - metadata.threshold, metadata.threshold], [0.1, 0.9]])
    assert list(runtimes.answers(two_classes, threshold)) == [0, 1, 1]
    assert list(runtimes.answers(np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]), None)) == [1, 0]


def test_bf16_where_it_cannot_run_is_refused(monkeypatch):
    monkeypatch.setattr(hardware, "native_bf16", lambda flags=None: False)
    assert "natively" in runtimes.bf16_refusal("auto", "bf16")
    assert "openvino" in runtimes.bf16_refusal("onnx", "bf16")
    assert runtimes.bf16_refusal("auto", "auto") is None


def test_onnx_without_an_export_is_refused(store):
    with pytest.raises(ModelStoreError, match=ONNX_FILE):
        runtime(store, "plain", runtime="onnx")


def test_keras_runtime_never_retraces_across_batch_sizes(store):
    rt = runtime(store, runtime="keras")
    for size in (1, 2, 4, 8, 3):
        assert rt(np.zeros((size, 64, 64, 3), dtype=np.uint8)).shape == (size,)
    assert rt._infer.experimental_get_tracing_count() == 1


def test_gpu_code_paths_run_on_a_cpu_host(store, batch):
    """DEVICE=gpu places ops on /GPU:0 with soft placement: on a CPU host they run there."""
    assert configure_tensorflow("cpu") == "/CPU:0"
    rt = runtime(store, runtime="keras", device="gpu")
    assert rt.device in ("/GPU:0",)
    reference = runtime(store, runtime="keras", device="cpu")(batch)
    assert np.abs(rt(batch) - reference).max() <= 1e-5


def test_mixed_precision_runs_and_stays_close(store, batch):
    mixed = runtime(store, runtime="keras", mixed_precision=True)
    layers = mixed.model.layers
    assert layers[1].dtype_policy.name == "mixed_float16"
    assert layers[-1].dtype_policy.name == "float32"
    reference = runtime(store, runtime="keras")(batch)
    out = mixed(batch)
    assert out.dtype == np.float32
    assert np.abs(out - reference).max() <= 1e-2


def test_options_are_validated():
    with pytest.raises(ValueError):
        RuntimeOptions(runtime="tensorrt")
    with pytest.raises(ValueError):
        RuntimeOptions(device="tpu")
    with pytest.raises(ValueError):
        RuntimeOptions(lanes=-1)


def test_onnx_lanes_answer_as_a_lone_call_does(store, batch):
    lanes = runtime(store, runtime="onnx", threads=2, lanes=0)  # 0: two where threads >= 2
    assert lanes.lanes == 2
    assert_overlapped_calls_answer_as_alone(lanes, batch)
    assert lanes._narrow.get_session_options().intra_op_num_threads == 1  # 2 threads / 2 lanes
    wider = runtime(store, runtime="onnx", threads=4, lanes=2)
    assert wider._narrow.get_session_options().intra_op_num_threads == 2
    assert runtime(store, runtime="onnx", threads=2, lanes=1).lanes == 1


def test_lanes_by_default_two_on_onnx_runtime_one_on_openvino():
    assert RuntimeOptions().cpu_lanes("onnx") == 1  # a library caller gets one unless it asks
    assert RuntimeOptions(lanes=0).cpu_lanes("onnx") == min(2, hardware.cores())
    assert RuntimeOptions(lanes=0, threads=1).cpu_lanes("onnx") == 1
    assert RuntimeOptions(lanes=0, threads=16).cpu_lanes("onnx") == 2  # two calls, 16 threads
    assert RuntimeOptions(lanes=0, threads=16).cpu_lanes("openvino") == 1  # asked for only
    assert RuntimeOptions(lanes=3).cpu_lanes("openvino") == 3


def test_openvino_lanes_answer_as_a_lone_call_does(store, batch):
    assert runtime(store, runtime="openvino", precision="fp32", threads=2, lanes=0).lanes == 1
    lanes = runtime(store, runtime="openvino", precision="fp32", threads=2, lanes=2)
    assert_overlapped_calls_answer_as_alone(lanes, batch)
    assert lanes.narrow_model.get_property("NUM_STREAMS") == 2
    assert lanes.narrow_model.get_property("INFERENCE_NUM_THREADS") == 2  # in all, one a stream
    assert lanes.compiled.get_property("NUM_STREAMS") == 1  # alone: one stream, both threads
    for model in (lanes.compiled, lanes.narrow_model):  # processes would pin the same cores
        assert model.get_property("ENABLE_CPU_PINNING") is False
    held = [lanes._narrow.get() for _ in range(2)]  # one infer request per lane
    assert lanes._narrow.empty()
    assert lanes(batch).shape == (len(batch),)  # a lone call needs no lane's request
    for request in held:
        lanes._narrow.put(request)
    one = runtime(store, runtime="openvino", precision="fp32", threads=2, lanes=1)
    assert one.lanes == 1 and one._narrow is None
    assert np.array_equal(one(batch, alone=False), one(batch))  # one lane: always the wide path


def test_openvino_has_no_more_lanes_than_threads(store):
    capped = runtime(store, runtime="openvino", precision="fp32", threads=1, lanes=2)
    assert capped.lanes == 1 and capped.narrow_model is None  # a stream needs a thread


def test_the_parity_check_covers_the_overlapped_lanes(store, monkeypatch):
    """bf16 answers checked on the one-stream model alone would miss a broken second one."""
    monkeypatch.setattr(hardware, "native_bf16", lambda flags=None: True)
    real = OpenVinoRuntime.__call__

    def overlapped_broken(self, images, alone=True):
        out = real(self, images, alone)
        return out if alone else np.full_like(out, np.nan)

    monkeypatch.setattr(OpenVinoRuntime, "__call__", overlapped_broken)
    one = runtime(store, runtime="openvino", precision="bf16", threads=2, lanes=1)
    if one.name != "openvino":
        pytest.skip("bf16 fails its parity check here even alone")
    lanes = runtime(store, runtime="openvino", precision="bf16", threads=2, lanes=2)
    assert (lanes.name, lanes.precision) == ("onnx", "fp32") and "parity" in lanes.note


def assert_overlapped_calls_answer_as_alone(rt, batch) -> None:
    alone = rt(batch)
    with ThreadPoolExecutor(4) as pool:  # more callers than lanes
        overlapped = list(pool.map(lambda _: rt(batch, alone=False), range(8)))
    for out in overlapped:
        assert np.abs(out - alone).max() <= 1e-5

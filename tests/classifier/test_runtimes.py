import numpy as np
import pytest

from classifier.errors import ModelStoreError
from classifier.metadata import ONNX_FILE
from classifier.runtimes import (
    KerasRuntime,
    OnnxRuntime,
    RuntimeOptions,
    configure_tensorflow,
    load_runtime,
)
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


def test_every_runtime_agrees_with_keras_within_1e_5(store, batch):
    keras_rt = runtime(store, runtime="keras")
    onnx_rt = runtime(store, runtime="onnx")
    assert isinstance(keras_rt, KerasRuntime) and isinstance(onnx_rt, OnnxRuntime)
    reference = np.asarray(keras_rt.model.predict_on_batch(batch.astype("float32"))).reshape(-1)
    for rt in (keras_rt, onnx_rt):
        out = rt(batch)
        assert out.shape == (8,) and out.dtype == np.float32
        assert np.abs(out - reference).max() <= 1e-5, rt.name


def test_auto_picks_onnx_on_cpu_when_exported_else_keras(store):
    assert runtime(store, runtime="auto").name == "onnx"
    assert runtime(store, "plain", runtime="auto").name == "keras"


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
